"""Interruption: ADS scoring killed with SIGKILL part-way resumes from its partial
cache and ends with the CSV of an uninterrupted run; a training run killed part-way
and resumed with --resume keeps the ADS selection and continues the WDPD schedule
(alpha, loss, lr) number for number from the iteration it stopped at."""
import csv
import json
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from log_utils import read_scalars, train_steps
from numerics import assert_same_score_rows
from reliability_utils import tiny_options

from mmseg_dfss.core.bn_stats import SCORE_RTOL

POOL = 600
SCORE_PIPELINE = "[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]"


@pytest.fixture(scope='module')
def pool_config(tmp_path_factory, repo_root, teacher_ckpt):
    """600 random 64 px images (about 5 s of scoring at batch 4) and an ADS config."""
    import cv2
    root = tmp_path_factory.mktemp('kill_pool')
    (root / 'pool').mkdir()
    rng = np.random.default_rng(0)
    for i in range(POOL):
        img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        img[:, :32] //= (i % 7) + 1
        cv2.imwrite(str(root / 'pool' / f'{i:05d}.png'), img)
    cfg = root / 'ads.py'
    base = osp.join(repo_root, 'configs/synthetic/ads_r18-tiny_synthetic-pool.py')
    cfg.write_text(f"""_base_ = [{base!r}]
train_dataloader = dict(dataset=dict(
    dataset=dict(_delete_=True, type='UnlabeledImageDataset',
                 data_prefix=dict(img_path={str(root / 'pool')!r}), pipeline={SCORE_PIPELINE}),
    teacher={osp.join(repo_root, 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py')!r},
    teacher_checkpoint={teacher_ckpt!r}, num_samples=60, score_batch_size=4,
    cache_dir={str(root / 'cache')!r}))
""")
    return root, str(cfg)


def _env(repo_root):
    return dict(os.environ, PYTHONPATH=repo_root, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


def _rows(path):
    with open(path, newline='') as f:
        return list(csv.reader(f))


def _lines(path):
    try:
        with open(path, 'rb') as f:
            return f.read().count(b'\n')
    except OSError:
        return 0


def test_sigkilled_scoring_resumes_and_matches_an_uninterrupted_run(pool_config, repo_root,
                                                                    tool):
    root, cfg = pool_config
    ref = root / 'reference.csv'
    tool('tools/ads_score.py', cfg, '--out', ref, '--cfg-options',
         'train_dataloader.dataset.cache_dir=None')

    out = root / 'resumed.csv'
    proc = subprocess.Popen([sys.executable, osp.join(repo_root, 'tools/ads_score.py'), cfg,
                             '--out', str(out)], cwd=repo_root, env=_env(repo_root),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part, deadline = None, time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            parts = [osp.join(d, f) for d, _, fs in os.walk(root / 'cache') for f in fs
                     if f == 'part-0.jsonl']
            if parts and _lines(parts[0]) >= POOL // 4:
                part = parts[0]
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and part is None:
            proc.kill()
        proc.wait()
    assert part is not None and proc.returncode == -signal.SIGKILL, \
        'scoring finished before it could be killed'
    assert not out.exists()
    with open(part, 'rb') as f:
        killed = f.read()
    complete = killed[:killed.rfind(b'\n') + 1]
    if killed == complete:  # killed between two writes: tear a line as a crash would
        killed = complete + complete.splitlines(keepends=True)[-1][:10]
        with open(part, 'wb') as f:
            f.write(killed)
    done = [json.loads(line)['i'] for line in complete.splitlines()]
    assert POOL // 4 <= len(done) == len(set(done)) < POOL

    tool('tools/ads_score.py', cfg, '--out', out)
    with open(part, 'rb') as f:
        resumed = f.read()
    # the rerun kept the part file as it was (torn line included) and appended a
    # newline and one line for each image not scored before the kill, and only those:
    # every complete line is reused, the torn line's image is scored again
    assert resumed.startswith(killed + b'\n')
    appended = [json.loads(line)['i'] for line in resumed[len(killed) + 1:].splitlines()]
    assert len(appended) == len(set(appended))
    assert set(appended) == set(range(POOL)) - set(done)
    ref_rows, rows = _rows(ref), _rows(out)
    assert rows[0] == ref_rows[0]
    assert sum(r[4] == '1' for r in rows) == 60
    # the resumed run batched the rescored images otherwise
    assert_same_score_rows(rows[1:], ref_rows[1:], SCORE_RTOL)


def _selection(ckpt):
    """The ADS selection a checkpoint was trained on (ADSSelectionHook's record)."""
    import torch
    return torch.load(ckpt, map_location='cpu', weights_only=False)['meta']['ads_selection']


def _cache_lines(work):
    return sorted((name, _lines(osp.join(d, name)))
                  for d, _, files in os.walk(osp.join(work, 'ads_cache')) for name in files
                  if name.startswith('part-'))


@pytest.mark.slow
def test_sigkilled_training_resumes_selection_and_wdpd_schedule(tmp_path, synthetic_root,
                                                                teacher_ckpt, cpu_dfss_config,
                                                                repo_root, tool):
    total = 12
    full = str(tmp_path / 'full')
    tool('tools/train.py', cpu_dfss_config, '--work-dir', full, '--cfg-options',
         *tiny_options(synthetic_root, teacher_ckpt, full, max_iters=total))
    reference = train_steps(read_scalars(full)[0], 'lr', 'loss_wdpd', 'wdpd_alpha')
    assert sorted(reference) == list(range(1, total + 1))
    alphas = [reference[i][2] for i in range(1, total + 1)]
    assert alphas[0] < alphas[4] < 1.0 and alphas[-1] == 1.0  # the ramp of Eq. 13

    work = str(tmp_path / 'killed')
    opts = tiny_options(synthetic_root, teacher_ckpt, work, max_iters=total)
    proc = subprocess.Popen([sys.executable, osp.join(repo_root, 'tools/train.py'),
                             cpu_dfss_config, '--work-dir', work, '--cfg-options', *opts],
                            cwd=repo_root, env=_env(repo_root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            # MMEngine writes last_checkpoint right after iter_N.pth
            if osp.isfile(osp.join(work, 'last_checkpoint')):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'training finished before it could be killed'
    with open(osp.join(work, 'last_checkpoint')) as f:
        resumed_from = int(re.search(r'iter_(\d+)\.pth', f.read()).group(1))
    assert 2 <= resumed_from < total // 2  # inside the ramp: alpha still rising there

    scored = _cache_lines(work)
    assert sum(n for _, n in scored) == 64
    tool('tools/train.py', cpu_dfss_config, '--work-dir', work, '--resume',
         '--cfg-options', *opts)
    assert _cache_lines(work) == scored  # nothing scored again
    # the same ADS selection (kept paths in order, strategy) as the uninterrupted run
    assert _selection(osp.join(work, f'iter_{total}.pth')) == \
        _selection(osp.join(full, f'iter_{total}.pth'))
    resumed = train_steps(read_scalars(work)[0], 'lr', 'loss_wdpd', 'wdpd_alpha')
    assert sorted(resumed) == list(range(resumed_from + 1, total + 1))
    for i in resumed:  # lr, loss and the WDPD alpha of the uninterrupted run
        assert resumed[i] == pytest.approx(reference[i], rel=1e-3), i
