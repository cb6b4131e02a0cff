"""Multi-process DFSS training with real processes (torchrun, gloo on CPU, plain BN):
tools/dist_train.sh trains on 2 processes with DDP; its mid-run checkpoint resumes
with --resume on 2 "nodes" of one process each (dist_train.sh with NNODES/NODE_RANK/
MASTER_ADDR on this machine) and continues the run number for number (WDPD alpha,
lr, loss, final weights). Slow: the 2-process checkpoint resumes in 1 process.
(The 2-process tools/ads_score.py run equal to a 1-process run, each rank scoring its
share, is test_two_process_gloo_run_resumes_a_partial_cache_each_rank_its_share in
tests/tools/test_ads_score.py.)"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from log_utils import read_scalars, train_steps
from reliability_utils import free_port, tiny_options

HERE = osp.dirname(osp.abspath(__file__))
ITERS = 4  # WDPD ramp r = 1/2: alpha rises over iterations 1-2 and is 1 from 3 on


def dist_env(**extra):
    """Nothing CPU-specific: on a torch without CUDA the tools set up gloo and CPU DDP.
    This folder is on PYTHONPATH for the probe hook (dist_train.sh adds the repo)."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PORT=str(free_port()),
               PATH=osp.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''),
               PYTHONPATH=HERE)
    env.update(extra)
    return env


def start_dist_train(repo_root, config, work, options, gpus=2, env=None, log=None):
    """Starts tools/dist_train.sh; its output goes to ``log`` (a file: two nodes'
    pipes could fill up while one waits for the other)."""
    log = log or work + '.log'
    os.makedirs(osp.dirname(log), exist_ok=True)
    with open(log, 'w') as f:
        proc = subprocess.Popen(
            ['bash', osp.join(repo_root, 'tools/dist_train.sh'), config, str(gpus),
             '--work-dir', work, '--cfg-options', *options], cwd=repo_root,
            env=env or dist_env(), stdout=f, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def _wait(proc, timeout):
    """Waits for a started launch (killed after ``timeout`` s); returns its output."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with open(proc.log) as f:
        return f.read()


def dist_train(repo_root, config, work, options, timeout=400):
    """`bash tools/dist_train.sh CONFIG 2` to the end: a CompletedProcess (its stdout
    holds the output of both ranks, stderr is empty)."""
    proc = start_dist_train(repo_root, config, work, options)
    out = _wait(proc, timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, '')


def finish(proc, timeout=400):
    out = _wait(proc, timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def probes(work):
    found = {}
    for r in (0, 1):
        with open(osp.join(work, f'probe_rank{r}.json')) as f:
            found[r] = json.load(f)
    return found


def cache_lines(work):
    """{score cache part file: its number of lines} under ``<work>/ads_cache``."""
    found = {}
    for d, _, files in os.walk(osp.join(work, 'ads_cache')):
        for name in files:
            if name.startswith('part-'):
                with open(osp.join(d, name)) as f:
                    found[osp.relpath(osp.join(d, name), work)] = sum(1 for _ in f)
    return found


def student_weights(path):
    from mmseg_dfss.core.safe_load import safe_torch_load
    state = safe_torch_load(path, map_location='cpu')['state_dict']
    return {k: v for k, v in state.items() if k.startswith('student.')}


@pytest.fixture(scope='module')
def probe_config(tmp_path_factory, cpu_dfss_config):
    """The CPU DFSS config plus the probe hook (tests/reliability/ddp_probe.py)."""
    path = str(tmp_path_factory.mktemp('probe_cfg') / 'dfss_cpu_probe.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = [{cpu_dfss_config!r}]\n"
                "custom_imports = dict(imports=['mmseg_dfss', 'ddp_probe'])\n"
                "custom_hooks = [dict(type='WDPDHook'), dict(type='ADSSelectionHook'),\n"
                "                dict(type='StudentExportHook'), dict(type='DDPProbeHook')]\n")
    return path


@pytest.fixture(scope='module')
def ddp_run(tmp_path_factory, synthetic_root, teacher_ckpt, probe_config, repo_root):
    """`bash tools/dist_train.sh CONFIG 2`: 4 iterations, checkpoints at 2 and 4."""
    work = str(tmp_path_factory.mktemp('ddp') / 'work')
    proc = dist_train(repo_root, probe_config, work,
                      tiny_options(synthetic_root, teacher_ckpt, work, max_iters=ITERS))
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    return work, out


def test_dist_train_sh_trains_ddp_on_two_processes(ddp_run):
    work, out = ddp_run
    ranks = probes(work)
    assert [p['world_size'] for p in ranks.values()] == [2, 2] and ranks[0]['ddp']
    # each rank trained on its own shard of the 16 ADS-selected images ...
    a, b = (ranks[r]['pool_indices'] for r in (0, 1))
    assert len(a) == len(b) == ITERS * 2 and not set(a) & set(b)
    assert len(set(a) | set(b)) == 16
    # ... and the averaged gradients kept the two replicas identical while they moved
    assert ranks[0]['last_digest'] == ranks[1]['last_digest'] != ranks[0]['first_digest']
    train, val = read_scalars(work)
    steps = train_steps(train, 'lr', 'loss_wdpd', 'wdpd_alpha')
    assert sorted(steps) == list(range(1, ITERS + 1)), out[-3000:]
    # Eq. 13 with I = 4, r = 1/2: alpha_i(t) = w_i + (1 - w_i) t / 2 for t <= 2, else 1,
    # t = 0, 1, 2, 3 at iterations 1-4; the log holds rank 0's batch mean (2 samples)
    w = ranks[0]['ads_weights']

    def eq13(shift):
        return [sum(min(1.0, wi + (1 - wi) * (t + shift) / 2) for wi in w[2 * t:2 * t + 2]) / 2
                for t in range(ITERS)]

    alphas = [steps[i][2] for i in sorted(steps)]
    assert alphas == pytest.approx(eq13(0), rel=1e-6, abs=1e-7)
    assert eq13(1) != pytest.approx(eq13(0), rel=1e-3)  # t off by one would not match
    assert [0 <= r['mIoU'] <= 100 for r in val if 'mIoU' in r] == [True]
    for name in ('iter_2.pth', f'iter_{ITERS}.pth', 'student/student.pth'):
        assert osp.isfile(osp.join(work, name)), name


def test_resume_on_two_nodes_continues_the_run(tmp_path, ddp_run, synthetic_root,
                                               teacher_ckpt, probe_config, repo_root):
    """--resume from iteration 2 of the 2-process run, on NNODES=2 x 1 process: the
    WDPD schedule and lr continue from t = 2 (not 0), every logged value equals the
    uninterrupted run's, and the final student weights are the same."""
    ref_work, _ = ddp_run
    work = str(tmp_path / 'resumed')
    opts = tiny_options(synthetic_root, teacher_ckpt, work, max_iters=ITERS) + [
        f'load_from={ref_work}/iter_2.pth',
        f'train_dataloader.dataset.cache_dir={ref_work}/ads_cache']  # no rescoring
    port = str(free_port())
    nodes = [start_dist_train(repo_root, probe_config, work, opts + ['--resume'], gpus=1,
                              env=dist_env(NNODES='2', NODE_RANK=str(r),
                                           MASTER_ADDR='127.0.0.1', PORT=port),
                              log=str(tmp_path / f'node{r}.log'))
             for r in (0, 1)]
    cache_before = cache_lines(ref_work)
    out = ''.join(finish(p) for p in nodes)
    ranks = probes(work)
    assert [(p['world_size'], p['start_iter']) for p in ranks.values()] == [(2, 2), (2, 2)]
    # no image scored again (the cache gained no line), the same ADS selection, and
    # iterations 3-4 of each rank see the samples of the uninterrupted run
    assert cache_lines(ref_work) == cache_before and sum(cache_before.values()) == 64
    ref_ranks = probes(ref_work)
    for r in (0, 1):
        assert ranks[r]['selected'] == ref_ranks[r]['selected']
        assert ranks[r]['pool_indices'] == ref_ranks[r]['pool_indices'][4:]
    ref = train_steps(read_scalars(ref_work)[0], 'lr', 'loss_wdpd', 'wdpd_alpha')
    resumed = train_steps(read_scalars(work)[0], 'lr', 'loss_wdpd', 'wdpd_alpha')
    assert sorted(resumed) == list(range(3, ITERS + 1)), out[-3000:]
    for i in resumed:  # number for number: same data, same augmentation, same steps
        assert resumed[i] == ref[i], i
    ours = student_weights(osp.join(work, f'iter_{ITERS}.pth'))
    theirs = student_weights(osp.join(ref_work, f'iter_{ITERS}.pth'))
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k


@pytest.mark.slow
def test_two_process_training_resumes_in_one_process(tmp_path, ddp_run, synthetic_root,
                                                     teacher_ckpt, probe_config, repo_root,
                                                     tool):
    ref_work, _ = ddp_run
    cache_before = cache_lines(ref_work)
    work = str(tmp_path / 'one')
    proc = tool('tools/train.py', probe_config, '--work-dir', work, '--resume',
                '--cfg-options', *tiny_options(synthetic_root, teacher_ckpt, work,
                                               max_iters=ITERS + 2),
                f'load_from={ref_work}/iter_{ITERS}.pth',
                f'train_dataloader.dataset.cache_dir={ref_work}/ads_cache',
                env=dict(PYTHONPATH=f'{repo_root}{os.pathsep}{HERE}'))
    out = proc.stdout + proc.stderr
    with open(osp.join(work, 'probe_rank0.json')) as f:
        probe = json.load(f)
    assert (probe['world_size'], probe['start_iter'], probe['ddp']) == (1, ITERS, False)
    steps = train_steps(read_scalars(work)[0], 'lr', 'loss_wdpd', 'wdpd_alpha')
    assert sorted(steps) == [ITERS + 1, ITERS + 2], out[-3000:]
    assert cache_lines(ref_work) == cache_before  # the pool is not scored again
    assert probe['selected'] == probes(ref_work)[0]['selected']  # the same ADS selection
    assert osp.isfile(osp.join(work, f'iter_{ITERS + 2}.pth'))

