"""``teacher_checkpoint='metafile'``: a zoo teacher's weights come from the installed
package's metafile, for the ADS wrapper and the distiller alike; resolution errors name
the config and the metafiles searched. A ``pkg::`` config or base that the installed
release does not ship is a one-line error naming it, the installed MMSeg and what to do.

The download path runs on a fabricated OpenMMLab-style package (``.mim/model-index.yml``
and ``.mim/configs/<folder>/metafile.yaml``) whose metafile points at a checkpoint served
from 127.0.0.1; the installed MMSeg's own metafiles are read in
tests/tools/test_zoo_recipes.py."""
import importlib.util
import os.path as osp
import re
from importlib import metadata

import cv2
import numpy as np
import pytest
import torch
import yaml
from checkpoint_server import CheckpointServer
from conftest import run_python
from mmengine.model import revert_sync_batchnorm

from mmseg_dfss.core import PoolScorer, load_model_config
from mmseg_dfss.core.teacher import build_segmentor, resolve_teacher_checkpoint, weights_digest
from mmseg_dfss.core.zoo import MetafileError, ZooConfigError, check_config_bases
from mmseg_dfss.datasets import ADSDataset, UnlabeledImageDataset
from mmseg_dfss.models import DataFreeDistiller
from mmseg_dfss.utils import run_mmseg_tool

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
ZOO = 'dfsszoo'  # the fabricated package
SPEC = dict(cfg_path=f'{ZOO}::tiny/teacher.py')


def write_zoo(site, repo_root, url):
    """``<site>/dfsszoo``: configs that inherit the synthetic teacher, a metafile per
    folder, and a model-index.yml that lists them (MMSeg's layout)."""
    mim = site / ZOO / '.mim'
    (mim / 'configs' / 'tiny').mkdir(parents=True)
    (mim / 'configs' / 'other').mkdir()
    (site / ZOO / '__init__.py').write_text('')
    for rel in ('tiny/teacher.py', 'tiny/unlisted.py', 'tiny/no_weights.py', 'tiny/twice.py',
                'tiny/listed_elsewhere.py'):
        (mim / 'configs' / rel).write_text(f'_base_ = [{osp.join(repo_root, TEACHER)!r}]\n')

    def entry(name, **extra):
        return dict(Name=name, Config=f'configs/tiny/{name}.py',
                    Results=dict(Dataset='Synthetic'), **extra)

    metafiles = {
        'tiny': [entry('teacher', Weights=url),
                 entry('no_weights'),
                 entry('twice', Weights=url.replace('teacher.pth', 'a.pth')),
                 entry('twice', Weights=url.replace('teacher.pth', 'b.pth'))],
        'other': [entry('listed_elsewhere', Weights=url.replace('teacher.pth', 'else.pth'))],
    }
    for folder, models in metafiles.items():
        with open(mim / 'configs' / folder / 'metafile.yaml', 'w') as f:
            yaml.safe_dump(dict(Collections=[dict(Name=folder)], Models=models), f)
    (mim / 'model-index.yml').write_text(
        'Import:\n' + ''.join(f'- configs/{d}/metafile.yaml\n' for d in metafiles))
    return mim


@pytest.fixture
def zoo(tmp_path, repo_root, monkeypatch):
    """The fabricated package on sys.path, its teacher checkpoint served over HTTP (an
    isolated torch hub cache); yields the server, the URL, the weights digest and .mim."""
    served = tmp_path / 'served'
    served.mkdir()
    torch.manual_seed(5)
    model = revert_sync_batchnorm(build_segmentor(osp.join(repo_root, TEACHER)))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict()), str(served / 'teacher.pth'))
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    with CheckpointServer(served) as server:
        url = server.url('teacher.pth')
        mim = write_zoo(tmp_path / 'site', repo_root, url)
        monkeypatch.syspath_prepend(str(tmp_path / 'site'))
        yield dict(server=server, url=url, digest=weights_digest(model), mim=mim)


@pytest.fixture
def pool(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(tmp_path / f'{i}.png'), rng.integers(0, 256, (32, 32, 3), np.uint8))
    return str(tmp_path)


def test_ads_and_distiller_take_the_metafile_weights_from_one_download(repo_root, zoo, pool):
    """The recipes' spelling: one 'metafile' for both; one GET, the same weights."""
    ds = ADSDataset(
        dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=pool),
                     pipeline=PIPELINE),
        teacher=SPEC, teacher_checkpoint='metafile', num_samples=2, score_pipeline=PIPELINE,
        cache_dir=None)
    assert ds.teacher_record['checkpoint'] == zoo['url']
    assert ds.teacher_record['weights_digest'] == zoo['digest']
    torch.manual_seed(0)
    model = revert_sync_batchnorm(DataFreeDistiller(
        teacher=SPEC, teacher_checkpoint='metafile', student=osp.join(repo_root, STUDENT),
        distill_loss=dict(type='WDPDLoss', mode='wdd')))
    model.init_weights()
    items = [ds[0], ds[1]]
    batch = model.data_preprocessor(dict(inputs=[it['inputs'] for it in items],
                                         data_samples=[it['data_samples'] for it in items]),
                                    training=True)
    loss = model.train().loss(**batch)  # the distiller checks ADS scored with its teacher
    assert torch.isfinite(loss['loss_wdpd'])
    assert model.load_teacher()['checkpoint'] == zoo['url']
    assert weights_digest(model.teacher) == zoo['digest']
    assert zoo['server'].gets == {'/teacher.pth': 1}  # the distiller read the hub cache


def test_a_config_listed_in_another_folders_metafile_is_found(zoo):
    url = zoo['url'].replace('teacher.pth', 'else.pth')
    assert resolve_teacher_checkpoint(f'{ZOO}::tiny/listed_elsewhere.py', 'metafile') == url


def test_paths_and_urls_are_not_resolved(zoo):
    for ckpt in (zoo['url'], 'checkpoints/metafile.pth', './metafile', None):
        assert resolve_teacher_checkpoint(SPEC, ckpt) == ckpt


def test_config_in_no_metafile_names_it_and_the_metafiles_searched(zoo, pool):
    mim = str(zoo['mim'])
    images = UnlabeledImageDataset(data_prefix=dict(img_path=pool), pipeline=[])
    with pytest.raises(MetafileError) as e:
        PoolScorer(dict(cfg_path=f'{ZOO}::tiny/unlisted.py'), 'metafile',
                   progress=False).score(images)
    msg = str(e.value)
    assert f"'{ZOO}::tiny/unlisted.py' is in no metafile" in msg
    assert osp.join(mim, 'configs', 'tiny', 'metafile.yaml') in msg
    assert f"the 1 other metafiles listed in {osp.join(mim, 'model-index.yml')}" in msg
    assert '\n' not in msg


def test_metafile_entry_without_weights_is_named(repo_root, zoo):
    model = DataFreeDistiller(teacher=dict(cfg_path=f'{ZOO}::tiny/no_weights.py'),
                              teacher_checkpoint='metafile',
                              student=osp.join(repo_root, STUDENT))
    metafile = osp.join(str(zoo['mim']), 'configs', 'tiny', 'metafile.yaml')
    with pytest.raises(MetafileError, match=re.escape(
            f"entry of '{ZOO}::tiny/no_weights.py' ('no_weights' in {metafile}")
            + '.*has no Weights'):
        model.train()  # the weights are loaded when training starts
    assert not zoo['server'].gets


def test_config_listed_with_two_weights_is_not_guessed(zoo):
    with pytest.raises(MetafileError, match=r"listed with 2 different Weights \(.*/a\.pth, "
                       r".*/b\.pth; in .*tiny/metafile\.yaml"):
        resolve_teacher_checkpoint(f'{ZOO}::tiny/twice.py', 'metafile')


def test_metafile_needs_a_zoo_config(repo_root):
    local = osp.join(repo_root, TEACHER)
    with pytest.raises(MetafileError, match=re.escape(f'the teacher is {local}')):
        resolve_teacher_checkpoint(local, 'metafile')
    inline = load_model_config(local).to_dict()
    with pytest.raises(MetafileError, match="an inline config dict.*cfg_path='mmseg::"):
        resolve_teacher_checkpoint(inline, 'metafile')


# ---------------------------------------------- pkg:: configs the installed line lacks
def installed_mmseg():
    for dist in ('onedl-mmsegmentation', 'mmsegmentation'):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    raise AssertionError('no MMSeg distribution installed')


MISSING = 'mmseg::_base_/datasets/not_in_any_release.py'


def assert_one_line_naming(msg, base):
    dist, version = installed_mmseg()
    line = 'the maintained line' if dist.startswith('onedl-') else 'the 1.2 line'
    assert '\n' not in msg
    assert f"{base!r}" in msg
    assert f'{dist} {version}, {line}' in msg
    assert 'pip install' in msg and 'DFSS_STACK=1.2' in msg  # how to install either line


@pytest.fixture
def bad_config(tmp_path):
    """A config whose local base inherits an mmseg:: base no release ships."""
    (tmp_path / 'base.py').write_text(
        f"_base_ = ['mmseg::_base_/default_runtime.py', {MISSING!r}]\n")
    (tmp_path / 'cfg.py').write_text("_base_ = ['./base.py']\nx = 1\n")
    return str(tmp_path / 'cfg.py')


def test_missing_mmseg_base_is_one_line_naming_it_and_the_installed_line(bad_config):
    with pytest.raises(ZooConfigError) as e:
        check_config_bases(bad_config)
    assert_one_line_naming(str(e.value), MISSING)
    assert osp.join(osp.dirname(bad_config), 'base.py') in str(e.value)  # the file naming it


def test_present_mmseg_bases_pass(repo_root):
    for cfg in ('configs/dfss/deeplabv3_r50_to_mbv2_cityscapes.py', TEACHER):
        check_config_bases(osp.join(repo_root, cfg))


def test_missing_mmseg_teacher_config_is_one_line(repo_root):
    path = 'mmseg::deeplabv3/deeplabv3_r50-d8_not_shipped.py'
    with pytest.raises(ZooConfigError) as e:
        load_model_config(dict(cfg_path=path))
    assert_one_line_naming(str(e.value), path)


def test_mmseg_tools_stop_in_one_line_on_a_missing_base(bad_config, repo_root):
    with pytest.raises(SystemExit) as e:  # tools/test.py's runner, in-process
        run_mmseg_tool('test.py', [bad_config, 'ckpt.pth'])
    assert_one_line_naming(str(e.value.code), MISSING)
    proc = run_python('tools/train.py', bad_config, '--allow-random-teacher', timeout=300)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert_one_line_naming(proc.stderr.strip().splitlines()[-1], MISSING)


def load_tool(repo_root, name):
    spec = importlib.util.spec_from_file_location(f'dfss_tool_{name}',
                                                  osp.join(repo_root, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('name,args', [('check_dataset', []),
                                       ('compare_pools', ['--pools', 'a=unused']),
                                       ('pool_entropy', [])])
def test_config_reading_tools_stop_in_one_line_on_a_missing_base(repo_root, bad_config, name,
                                                                 args):
    with pytest.raises(SystemExit) as e:
        load_tool(repo_root, name).main([bad_config, *args])
    assert_one_line_naming(str(e.value.code), MISSING)


def test_student_export_with_a_config_missing_a_base_is_one_line(bad_config, tmp_path):
    from mmseg_dfss.models import export_student_from_checkpoint
    ckpt = str(tmp_path / 'run.pth')
    torch.save(dict(state_dict={'student.w': torch.zeros(1)}), ckpt)
    with pytest.raises(ZooConfigError) as e:
        export_student_from_checkpoint(ckpt, str(tmp_path / 'out'), bad_config)
    assert_one_line_naming(str(e.value), MISSING)
