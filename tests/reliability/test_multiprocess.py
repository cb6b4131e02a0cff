"""Multi-process DFSS training: tools/dist_train.sh (torchrun, gloo on CPU) trains a
few iterations on 2 processes, and its checkpoint resumes in one process with
tools/train.py --resume. (The 2-process tools/ads_score.py run equal to a 1-process
run is tests/tools/test_ads_score.py::test_two_process_gloo_run_equals_one_process.)"""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
from reliability_utils import free_port, tiny_options


def dist_train(repo_root, config, work, options, timeout=300):
    """tools/dist_train.sh with 2 processes; nothing CPU-specific is passed: on a
    torch without CUDA the tool itself sets up gloo and a CPU DDP wrapper."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PORT=str(free_port()),
               PATH=osp.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    env['PYTHONPATH'] = ''
    return subprocess.run(
        ['bash', osp.join(repo_root, 'tools/dist_train.sh'), config, '2', '--work-dir', work,
         '--cfg-options', *options],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=timeout)


def test_dist_train_sh_starts_on_cpu_only_torch(tmp_path, synthetic_root, teacher_ckpt,
                                                cpu_dfss_config, repo_root):
    work = str(tmp_path / 'work')
    proc = dist_train(repo_root, cpu_dfss_config, work,
                      tiny_options(synthetic_root, teacher_ckpt, work, max_iters=1))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


@pytest.mark.slow
def test_two_process_training_resumes_in_one_process(tmp_path, synthetic_root, teacher_ckpt,
                                                     cpu_dfss_config, repo_root, tool):
    work = str(tmp_path / 'work')
    proc = dist_train(repo_root, cpu_dfss_config, work,
                      tiny_options(synthetic_root, teacher_ckpt, work, max_iters=4))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'Iter(train) [4/4]' in out and 'loss_wdpd' in out and 'wdpd_alpha' in out
    assert 'mIoU' in out
    for name in ('iter_2.pth', 'iter_4.pth', 'student/student.pth'):
        assert osp.isfile(osp.join(work, name)), name
    # both ranks scored a shard of the pool, into one cache
    (cache, ) = [d for d in os.listdir(osp.join(work, 'ads_cache')) if d.startswith('ads-')]
    parts = sorted(os.listdir(osp.join(work, 'ads_cache', cache)))
    assert parts == ['meta.json', 'part-0.jsonl', 'part-1.jsonl'], parts
    kept = re.search(r'ADS \(ads\): kept 16 of 64 .*', out).group(0)

    proc = tool('tools/train.py', cpu_dfss_config, '--work-dir', work, '--resume',
                '--cfg-options', *tiny_options(synthetic_root, teacher_ckpt, work, max_iters=6))
    out = proc.stdout + proc.stderr
    assert re.search(r'resumed epoch: 0, iter: 4', out), out[-3000:]
    assert 'Iter(train) [5/6]' in out and 'Iter(train) [1/6]' not in out
    assert 'reusing 64/64 scores' in out  # the pool is not scored again
    assert kept in out  # same selection: same kept scores and sub-domain mix
    assert osp.isfile(osp.join(work, 'iter_6.pth'))
