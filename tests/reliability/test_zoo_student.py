"""Zoo students through the tools (issue 10, item 5): a student with an auxiliary
head trains under DDP (2 processes, torchrun + gloo on CPU), and ``tools/train.py
--amp`` trains on a CPU-only machine. (In-process checks of the same behaviour:
tests/models/test_zoo_inputs.py.)"""
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint
from reliability_utils import tiny_options
from test_multiprocess import dist_train

STUDENT_WITH_AUX = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'


@pytest.fixture(scope='module')
def aux_student_config(tmp_path_factory, repo_root, cpu_dfss_config):
    """The CPU DFSS config with the student's zoo auxiliary FCN head kept in its
    config (plain BN: DDP refuses SyncBN on CPU)."""
    from mmseg_dfss.core import load_model_config
    student = load_model_config(osp.join(repo_root, STUDENT_WITH_AUX)).to_dict()
    student = json.loads(json.dumps(student).replace('"SyncBN"', '"BN"'))
    assert student['auxiliary_head']['type'] == 'FCNHead'
    student['decode_head']['dropout_ratio'] = 0.0
    student['_delete_'] = True
    path = str(tmp_path_factory.mktemp('cfg') / 'dfss_aux_student.py')
    with open(path, 'w') as f:
        f.write(f'_base_ = [{cpu_dfss_config!r}]\nmodel = dict(student={student!r})\n')
    return path


@pytest.mark.slow
def test_student_with_auxiliary_head_trains_under_ddp(tmp_path, synthetic_root, teacher_ckpt,
                                                      aux_student_config, repo_root):
    """Before the head was dropped, iteration 2 died with "Expected to have finished
    reduction in the prior iteration" (the head got no gradient)."""
    work = str(tmp_path / 'work')
    proc = dist_train(repo_root, aux_student_config, work,
                      tiny_options(synthetic_root, teacher_ckpt, work, max_iters=3,
                                   ckpt_interval=3))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    ckpt = _load_checkpoint(osp.join(work, 'iter_3.pth'), map_location='cpu')
    assert ckpt['meta']['iter'] == 3
    assert not [k for k in ckpt['state_dict'] if k.startswith('student.auxiliary_head.')]
    # the exported student is plain MMSeg: its config and weights match, strictly
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(work, 'student', 'student_config.py'))
    assert 'auxiliary_head' not in cfg.model
    student = MODELS.build(cfg.model)
    state = torch.load(osp.join(work, 'student', 'student.pth'), weights_only=True)
    student.load_state_dict(state['state_dict'], strict=True)


@pytest.mark.slow
def test_train_tool_amp_runs_on_cpu(tmp_path, synthetic_root, teacher_ckpt, cpu_dfss_config,
                                    tool):
    """MMSeg's --amp (optim_wrapper.type='AmpOptimWrapper') on a CPU-only torch:
    MMEngine's own wrapper refuses to start; this one runs bf16 autocast."""
    assert not torch.cuda.is_available()
    work = str(tmp_path / 'work')
    tool('tools/train.py', cpu_dfss_config, '--work-dir', work, '--amp', '--cfg-options',
         *tiny_options(synthetic_root, teacher_ckpt, work, max_iters=2))
    ckpt = _load_checkpoint(osp.join(work, 'iter_2.pth'), map_location='cpu')
    cfg = Config.fromstring(ckpt['meta']['cfg'], file_format='.py')
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert 'loss_scaler' in ckpt['optimizer']
    values, _ = ckpt['message_hub']['log_scalars']['train/loss_wdpd'].data
    assert len(values) == 2 and all(math.isfinite(v) for v in values)
