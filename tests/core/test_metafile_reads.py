"""Package metafiles are parsed once per process (mmseg_dfss.core.metafile_reads): a
second read of a config with ``mmseg::`` bases parses none of them, a changed
metafile is read again, and a caller that changes what it got changes no later read."""
import os
import os.path as osp

import yaml
from mmengine.config import Config
from mmengine.config import utils as config_utils
from mmengine.fileio.handlers import yaml_handler

from mmseg_dfss.core.metafile_reads import memoized_load

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'


def counting(load_file):
    calls = []

    def load(path):
        calls.append(path)
        return load_file(path)

    return load, calls


def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def test_a_second_config_read_parses_no_metafile(repo_root, monkeypatch):
    parsed = []
    real = yaml_handler.YamlHandler.load_from_fileobj
    monkeypatch.setattr(yaml_handler.YamlHandler, 'load_from_fileobj',
                        lambda self, f, **kw: parsed.append(f) or real(self, f, **kw))
    path = osp.join(repo_root, TEACHER)
    Config.fromfile(path)
    parsed.clear()
    cfg = Config.fromfile(path)
    assert parsed == []
    # the mmseg:: bases were resolved: the model and the runtime come from MMSeg's files
    assert cfg.model.type == 'EncoderDecoder' and cfg.model.backbone.type == 'ResNetV1c'
    assert cfg.default_scope == 'mmseg'
    assert getattr(config_utils.load, '_mmseg_dfss_memoized', False)


def test_a_changed_metafile_is_read_again_and_copies_are_independent(tmp_path):
    mim = tmp_path / 'pkg' / '.mim' / 'configs' / 'm'
    mim.mkdir(parents=True)
    meta = mim / 'metafile.yaml'
    meta.write_text('Models:\n- Name: a\n  Config: configs/m/a.py\n')
    load, calls = counting(read_yaml)
    memo = memoized_load(load)
    first = memo(str(meta))
    first['Models'][0]['Name'] = 'changed by a caller'
    first['Models'].append('more')
    assert memo(str(meta)) == {'Models': [{'Name': 'a', 'Config': 'configs/m/a.py'}]}
    assert len(calls) == 1
    meta.write_text('Models:\n- Name: b\n  Config: configs/m/b.py\n')
    os.utime(meta, ns=(1, 1))  # another stamp even where the clock is coarse
    assert memo(str(meta)) == {'Models': [{'Name': 'b', 'Config': 'configs/m/b.py'}]}
    assert len(calls) == 2


def test_files_outside_a_mim_folder_are_parsed_each_time(tmp_path):
    other = tmp_path / 'settings.yaml'
    other.write_text('a: 1\n')
    load, calls = counting(read_yaml)
    memo = memoized_load(load)
    assert memo(str(other)) == memo(str(other)) == {'a': 1}
    assert len(calls) == 2
