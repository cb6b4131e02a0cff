"""Fixtures of the reliability tests: a random-init teacher checkpoint and a
CPU-runnable copy of the synthetic DFSS config (helpers: reliability_utils.py)."""
import os.path as osp

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'
DFSS = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'


@pytest.fixture(scope='session')
def teacher_ckpt(tmp_path_factory, repo_root):
    """The synthetic teacher with random weights and spread-out BN statistics."""
    from mmseg_dfss.core import build_frozen_segmentor
    torch.manual_seed(0)
    model = build_frozen_segmentor(osp.join(repo_root, TEACHER), allow_random_teacher=True)
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def _plain_bn(obj):
    """SyncBN -> BN: DDP refuses SyncBN on CPU ("SyncBatchNorm layers only work with
    GPU modules"); the weights are the same."""
    if isinstance(obj, dict):
        return {k: ('BN' if k == 'type' and v == 'SyncBN' else _plain_bn(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain_bn(v) for v in obj)
    return obj


@pytest.fixture(scope='session')
def cpu_dfss_config(tmp_path_factory, repo_root):
    """The synthetic DFSS config with plain BN in teacher and student (CPU DDP) and
    no dropout in the student (so a resumed run can be compared number for number)."""
    from mmseg_dfss.core import load_model_config
    teacher = _plain_bn(load_model_config(osp.join(repo_root, TEACHER)).to_dict())
    student = _plain_bn(load_model_config(osp.join(repo_root, STUDENT)).to_dict())
    student['decode_head']['dropout_ratio'] = 0.0
    teacher['_delete_'] = student['_delete_'] = True
    path = str(tmp_path_factory.mktemp('cfg') / 'dfss_cpu.py')
    with open(path, 'w') as f:
        f.write(f'_base_ = [{osp.join(repo_root, DFSS)!r}]\n'
                f'model = dict(teacher={teacher!r}, student={student!r})\n'
                f'train_dataloader = dict(dataset=dict(teacher={teacher!r}))\n')
    return path
