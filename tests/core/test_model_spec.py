"""Model specs as MMRazor writes them: ``dict(cfg_path=..., **overrides)`` is the file's
``model`` with the overrides merged by MMEngine's rules (``_delete_`` honoured)."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmseg_dfss.core import load_model_config

STUDENT = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'


def test_cfg_path_overrides_merge_like_mmengine_configs(repo_root):
    path = osp.join(repo_root, STUDENT)
    plain = load_model_config(path)
    spec = dict(cfg_path=path, decode_head=dict(channels=8),
                backbone=dict(_delete_=True, type='ResNetV1c', depth=18))
    cfg = load_model_config(spec)
    assert cfg.decode_head.channels == 8
    # the rest of decode_head is the file's
    assert cfg.decode_head.num_classes == plain.decode_head.num_classes == 7
    assert cfg.backbone == dict(type='ResNetV1c', depth=18)  # replaced, not merged
    assert cfg.data_preprocessor == plain.data_preprocessor
    assert spec['backbone']['_delete_'] is True  # the caller's spec is not modified
    # the same spec written in a config file and set from --cfg-options
    cfg_file = Config(dict(model=dict(student=dict(cfg_path=path))))
    cfg_file.merge_from_dict({'model.student.decode_head.channels': 8,
                              'model.student.backbone._delete_': True,
                              'model.student.backbone.type': 'ResNetV1c',
                              'model.student.backbone.depth': 18})
    assert load_model_config(cfg_file.model.student) == cfg


def test_cfg_path_errors_name_the_file(repo_root, tmp_path):
    path = osp.join(repo_root, STUDENT)
    with pytest.raises(TypeError, match=f'cfg_path={path!r}'):
        load_model_config(dict(cfg_path=path, decode_head=dict(dilations=dict(x=1))))
    missing = str(tmp_path / 'none.py')
    with pytest.raises(FileNotFoundError, match='none.py'):
        load_model_config(dict(cfg_path=missing))
    with pytest.raises(TypeError, match='cfg_path must be a config file path'):
        load_model_config(dict(cfg_path=3))
