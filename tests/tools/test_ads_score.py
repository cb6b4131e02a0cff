"""tools/ads_score.py: CSV, plots, sub-domain mix, and a 2-process gloo run."""
import csv
import json
import os
import os.path as osp
import socket
import subprocess
import sys
from collections import Counter

import pytest
from conftest import run_python
from mmengine.config import Config
from mmseg.registry import DATASETS
from numerics import assert_same_score_rows

from mmseg_dfss.core.bn_stats import SCORE_RTOL
from mmseg_dfss.core.shared_teacher import resolve_shared

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
EPS = 16


@pytest.fixture(scope='module')
def setup(tmp_path_factory, synthetic_root, repo_root, teacher_ckpt):
    """An ADS config over the synthetic pool with the random-init teacher."""
    root = tmp_path_factory.mktemp('ads_tool')
    ckpt = teacher_ckpt
    cfg = str(root / 'ads_cfg.py')
    with open(cfg, 'w') as f:
        f.write(f"""
_base_ = [{osp.join(repo_root, 'configs/synthetic/ads_r18-tiny_synthetic-pool.py')!r}]
model = dict(teacher=dict(cfg_path={osp.join(repo_root, TEACHER)!r}), teacher_checkpoint={ckpt!r})
train_dataloader = dict(dataset=dict(  # the ADS wrapper takes the model's teacher
    dataset=dict(data_root={osp.join(synthetic_root, 'pool')!r}),
    num_samples={EPS}, score_batch_size=5, cache_dir={str(root / 'cache')!r}))
""")
    return root, cfg


def read_csv(path):
    with open(path, newline='') as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, list(reader)


@pytest.fixture(scope='module')
def single_run(setup, tool):
    """One single-process run with plots (cache on); shared by the tests below."""
    root, cfg = setup
    out, plots = root / 'scores.csv', root / 'plots'
    proc = tool('tools/ads_score.py', cfg, '--out', out, '--plot', plots)
    return out, plots, proc


def test_csv_plots_and_subdomain_mix(single_run, setup, synthetic_root):
    out, plots, proc = single_run
    header, rows = read_csv(out)
    assert header == ['index', 'img_path', 'score', 'weight', 'selected']
    assert [int(r[0]) for r in rows] == list(range(64))
    kept = [r for r in rows if r[4] == '1']
    assert len(kept) == EPS and all(r[4] in '01' for r in rows)
    assert all(r[3] == '' for r in rows if r[4] == '0')
    kept_scores = sorted(float(r[2]) for r in kept)
    rest = [float(r[2]) for r in rows if r[4] == '0']
    assert max(kept_scores) <= min(rest)  # the eps lowest d are the kept ones
    weights = {float(r[2]): float(r[3]) for r in kept}
    assert weights[kept_scores[0]] == 1.0 and weights[kept_scores[-1]] == 0.0
    for name in ('d_hist.png', 'gallery.png', 'subdomain_mix.png'):
        assert osp.getsize(plots / name) > 1000
    mix = json.loads((plots / 'subdomain_mix.json').read_text())
    assert set(mix) == {'ads', 'random', 'confidence'}
    assert all(sum(m.values()) == EPS for m in mix.values())
    # each entry counts the sub-domains of what that strategy keeps: for 'ads' the
    # CSV's kept rows, for the others their own selection on the same pool and eps
    pool = osp.join(synthetic_root, 'pool')
    with open(osp.join(pool, 'pool.csv'), newline='') as f:
        tag = {osp.join(pool, r['filename']): r['subdomain'] for r in csv.DictReader(f)}
    expected = {'ads': dict(Counter(tag[r[1]] for r in kept))}
    for strategy in ('random', 'confidence'):  # their scores are in the tool's cache
        ds_cfg = resolve_shared(Config.fromfile(setup[1])).train_dataloader.dataset
        ds_cfg.update(strategy=strategy)
        expected[strategy] = DATASETS.build(ds_cfg).subdomain_mix()
    assert mix == expected
    assert expected['ads'] != expected['random']  # so the check tells them apart
    assert 'sub-domain mix (ads)' in proc.stdout and 'kept (eps): 16' in proc.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# tools/ads_score.py with rank 1 slow to read the score cache (as a slow node would):
# the delay is injected into ScoreCache.load before the tool runs
SLOW_RANK1 = """import os, runpy, sys, time
from mmseg_dfss.core.score_cache import ScoreCache
real_load = ScoreCache.load
def slow_load(self):
    if os.environ.get('RANK') == '1':
        time.sleep(1)
    return real_load(self)
ScoreCache.load = slow_load
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def _cache_lines(folder, rank):
    """Pool indices of the score lines in ``part-<rank>.jsonl``, in file order."""
    path = osp.join(folder, f'part-{rank}.jsonl')
    if not osp.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line)['i'] for line in f if line.strip()]


def test_two_process_gloo_run_resumes_a_partial_cache_each_rank_its_share(
        setup, single_run, repo_root, tmp_path):
    """2 processes resume the 1-process run's cache cut to its first 16 lines: the
    other 48 images are scored once each, split between the ranks (each appends
    only its own share to its part file), and the CSV equals the 1-process one."""
    import shutil
    root, cfg = setup
    one = single_run[0]
    (folder, ) = [d for d in os.listdir(root / 'cache') if d.startswith('ads-')]
    cache = tmp_path / 'cache'
    os.makedirs(cache / folder)
    shutil.copyfile(root / 'cache' / folder / 'meta.json', cache / folder / 'meta.json')
    with open(root / 'cache' / folder / 'part-0.jsonl') as f:
        lines = f.readlines()
    assert len(lines) == 64
    (cache / folder / 'part-0.jsonl').write_text(''.join(lines[:16]))
    kept = _cache_lines(cache / folder, 0)
    wrapper = tmp_path / 'slow_rank1.py'
    wrapper.write_text(SLOW_RANK1)
    two = root / 'two.csv'
    env = dict(os.environ, PYTHONPATH=repo_root, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={_free_port()}', str(wrapper), osp.join(repo_root, 'tools/ads_score.py'),
         cfg, '--launcher', 'pytorch', '--out', str(two), '--cfg-options',
         f'train_dataloader.dataset.cache_dir={cache}'],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    h1, r1 = read_csv(one)
    h2, r2 = read_csv(two)
    assert h1 == h2
    assert_same_score_rows(r2, r1, SCORE_RTOL)  # 2 processes batch the images otherwise
    # each rank scored its share of the 48 missing images, and only its share
    part0, part1 = _cache_lines(cache / folder, 0), _cache_lines(cache / folder, 1)
    assert part0[:16] == kept
    new0, new1 = part0[16:], part1
    missing = set(range(64)) - set(kept)
    assert len(new0) == len(set(new0)) and len(new1) == len(set(new1))
    assert not set(new0) & set(new1), 'an image was scored on both ranks'
    assert set(new0) | set(new1) == missing
    assert new0 and new1 and abs(len(new0) - len(new1)) <= 5  # whole batches of 5


def test_slurm_launcher_runs_on_a_cpu_only_torch(setup, single_run, repo_root, tmp_path):
    """``--launcher slurm`` as one Slurm task (the variables srun sets, a stand-in
    ``scontrol``): MMEngine's slurm launcher minus its CUDA call, same CSV."""
    root, cfg = setup
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'scontrol').write_text('#!/usr/bin/env bash\necho 127.0.0.1\n')
    (bin_dir / 'scontrol').chmod(0o755)
    out = tmp_path / 'slurm.csv'
    env = dict(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', SLURM_PROCID='0',
               SLURM_NTASKS='1', SLURM_LOCALID='0', SLURM_NODELIST='node1',
               MASTER_PORT=str(_free_port()))
    proc = run_python('tools/ads_score.py', cfg, '--launcher', 'slurm', '--out', out, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert read_csv(out) == read_csv(single_run[0])


def test_csv_rows_for_unreadable_and_non_finite_images(tmp_path, repo_root):
    import importlib.util
    from types import SimpleNamespace

    import numpy as np

    from mmseg_dfss.core import ScoreResult
    spec = importlib.util.spec_from_file_location('ads_score',
                                                  osp.join(repo_root, 'tools/ads_score.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = ScoreResult('ads', np.array([2.0, np.nan, np.inf, 0.5]), ['a.png', 'b.png', 'c.png',
                                                                     'd.png'],
                      errors={1: 'AssertionError: failed to load image: b.png'})
    ds = SimpleNamespace(result=res, selected=np.array([3, 0]), weights=np.array([1.0, 0.0]))
    mod.write_csv(str(tmp_path / 's.csv'), ds)
    header, rows = read_csv(tmp_path / 's.csv')
    assert header == ['index', 'img_path', 'score', 'weight', 'selected']
    assert rows == [['0', 'a.png', '2.0', '0.0', '1'], ['1', 'b.png', '', '', '0'],
                    ['2', 'c.png', 'inf', '', '0'], ['3', 'd.png', '0.5', '1.0', '1']]
