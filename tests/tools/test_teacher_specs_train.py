"""The teacher and student of a DFSS config reached the MMSeg way, through
tools/train.py: ``dict(cfg_path=...)`` specs whose keys ``--cfg-options`` sets
(``model.student.decode_head.channels=8``, ``model.teacher.<key>``), with the teacher's
checkpoint served over HTTP from 127.0.0.1 (downloaded once for ADS and distiller)."""
import os
import os.path as osp

import torch
from checkpoint_server import CheckpointServer
from mmengine.config import Config

from mmseg_dfss.core.teacher import build_segmentor

DFSS = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'
TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'


def synthetic_options(root, work, teacher_ckpt, max_iters=2):
    """--cfg-options: the synthetic fixture's data, eps 16, batch 2, ``max_iters``."""
    return [
        f'model.teacher_checkpoint={teacher_ckpt}',
        f'train_dataloader.dataset.teacher_checkpoint={teacher_ckpt}',
        f'train_dataloader.dataset.dataset.data_root={root}/pool',
        'train_dataloader.dataset.num_samples=16',
        f'train_dataloader.dataset.cache_dir={work}/ads_cache',
        'train_dataloader.batch_size=2',
        f'val_dataloader.dataset.data_root={root}/scenes',
        f'test_dataloader.dataset.data_root={root}/scenes',
        f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
        f'param_scheduler.0.end={max_iters}', f'default_hooks.checkpoint.interval={max_iters}',
        'default_hooks.logger.interval=1', 'default_hooks.visualization.draw=False',
    ]


def save_teacher(repo_root, path, **overrides):
    """A random-weight checkpoint of the synthetic teacher with ``overrides``."""
    torch.manual_seed(0)
    model = build_segmentor(dict(cfg_path=osp.join(repo_root, TEACHER), **overrides))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


def test_cfg_options_reach_inside_teacher_and_student_with_an_http_teacher(
        repo_root, synthetic_root, tmp_path, tool):
    served = tmp_path / 'served'
    served.mkdir()
    save_teacher(repo_root, str(served / 'teacher_c16.pth'), decode_head=dict(channels=16))
    work = str(tmp_path / 'work')
    env = dict(TORCH_HOME=str(tmp_path / 'torch_home'))
    with CheckpointServer(served) as server:
        url = server.url('teacher_c16.pth')
        tool('tools/train.py', DFSS, '--work-dir', work, '--cfg-options',
             *synthetic_options(synthetic_root, work, url),
             'model.student.decode_head.channels=8',
             'model.teacher.decode_head.channels=16',
             'train_dataloader.dataset.teacher.decode_head.channels=16', env=env)
        assert server.gets == {'/teacher_c16.pth': 1}  # ADS and distiller: one download
    state = torch.load(osp.join(work, 'iter_2.pth'), weights_only=False)['state_dict']
    assert state['student.decode_head.bottleneck.conv.weight'].shape[0] == 8
    exported = torch.load(osp.join(work, 'student', 'student.pth'))['state_dict']
    assert exported['decode_head.bottleneck.conv.weight'].shape[0] == 8
    exported_cfg = Config.fromfile(osp.join(work, 'student', 'student_config.py'))
    assert exported_cfg.model.decode_head.channels == 8
    assert os.listdir(tmp_path / 'torch_home' / 'hub' / 'checkpoints') == ['teacher_c16.pth']
