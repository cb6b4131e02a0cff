"""CPU DDP with SyncBN configs: the shipped configs use SyncBN, which torch's DDP
refuses on a CPU module; tools/dist_test.sh and dist_train.sh revert it (issue 26 item 7)."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel

from reliability_utils import free_port, tiny_options

from mmseg_dfss.engine import CPUDistributedDataParallel

DFSS = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/pg', rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _syncbn_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.SyncBatchNorm(4),
                                torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    return model


def test_syncbn_is_reverted_with_its_weights(one_process_group):
    with pytest.raises(ValueError, match='SyncBatchNorm layers only work with GPU'):
        MMDistributedDataParallel(module=_syncbn_model(), device_ids=None)
    model = _syncbn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = CPUDistributedDataParallel(module=model, device_ids=None)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in wrapped.modules())
    after = wrapped.module.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        assert torch.equal(after[k], before[k]), k
    wrapped.eval()
    assert wrapped(torch.rand(1, 3, 8, 8)).shape == (1, 2, 6, 6)


def _launch(repo_root, script, *args):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PORT=str(free_port()),
               PATH=osp.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    proc = subprocess.run(['bash', f'tools/{script}', *map(str, args)], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


@pytest.mark.slow
def test_dist_train_and_test_sh_run_the_shipped_syncbn_config_on_two_cpu_processes(
        tmp_path, repo_root, synthetic_root, teacher_ckpt):
    """The README's launchers, as written, with the shipped synthetic DFSS config (SyncBN
    in teacher and student): 2 iterations on 2 processes, then its test on 2 processes."""
    work = str(tmp_path / 'work')
    _launch(repo_root, 'dist_train.sh', DFSS, 2, '--work-dir', work, '--cfg-options',
            *tiny_options(synthetic_root, teacher_ckpt, work, max_iters=2))
    test_work = str(tmp_path / 'test')
    _launch(repo_root, 'dist_test.sh', DFSS, osp.join(work, 'iter_2.pth'), 2,
            '--work-dir', test_work, '--cfg-options', f'model.teacher_checkpoint={teacher_ckpt}',
            f'test_dataloader.dataset.data_root={synthetic_root}/scenes')
    results = glob.glob(osp.join(test_work, '*', '*.json'))
    assert len(results) == 1
    assert 0 <= json.load(open(results[0]))['mIoU'] <= 100
