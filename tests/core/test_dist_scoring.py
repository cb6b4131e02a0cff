"""Distributed ADS scoring with 2 real processes (gloo, CPU): exact under any
timing, and refused when the ranks do not see the same setup.

One spawn runs every scenario (starting processes is most of the cost):

1. a partial cache, rank 1 slow to read it (3 s injected before its read):
   every readable image is scored, both ranks hold the same complete scores and
   select what a 1-process run selects;
2. rank 1 reads the pool from another folder (a node-local copy);
3. rank 1 sees other file stamps for one image;
4. rank 1's cache_dir is another folder (not shared);
5. a pipeline error on rank 1 only.
"""
import json
import os
import os.path as osp
import shutil
import time

import numpy as np
import pytest
import torch
from numerics import assert_same_selection

from mmseg_dfss.core import PoolScorer, ScoreCache, load_model_config
from mmseg_dfss.core.bn_stats import SCORE_RTOL
from mmseg_dfss.core.selection import select_lowest

from test_pool_scorer_scale import N, PIPELINE, TEACHER, folder_pool, write_pool  # noqa: I100

EPS = 8


def make(cfg, ckpt, **kw):
    return PoolScorer(cfg, ckpt, score_pipeline=PIPELINE, batch_size=3, progress=False, **kw)


def _attempt(fn):
    try:
        fn()
        return 'no error'
    except Exception as e:  # the test checks type and message
        return f'{type(e).__name__}: {e}'


def _worker(rank, world, tmp, cfg, ckpt, pool_dir, copy_dir):
    import torch.distributed as dist
    from mmseg.utils import register_all_modules

    from mmseg_dfss.core import pool_scorer as ps
    register_all_modules(init_default_scope=True)
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{tmp}/store', rank=rank,
                            world_size=world)
    out = {}
    # 1. the resume race: rank 1 reads the cache late (as a slow node would)
    real_load = ScoreCache.load

    def slow_load(self):
        if rank == 1:
            time.sleep(3)
        return real_load(self)

    ScoreCache.load = slow_load
    res = make(cfg, ckpt, cache_dir=osp.join(tmp, 'cache')).score(folder_pool(pool_dir))
    ScoreCache.load = real_load
    out['scores'] = [None if np.isnan(s) else s for s in res.scores.tolist()]
    out['errors'] = {str(k): v for k, v in res.errors.items()}
    out['selected'] = select_lowest(res.scores, EPS).tolist()
    # 2. a node-local copy of the pool on rank 1
    out['path'] = _attempt(lambda: make(cfg, ckpt).score(
        folder_pool(pool_dir if rank == 0 else copy_dir)))
    # 3. other file stamps on rank 1
    real_stamp = ps.file_stamp
    if rank == 1:
        ps.file_stamp = lambda p: ([real_stamp(p)[0], real_stamp(p)[1] + 10**9]
                                   if p.endswith('005.png') else real_stamp(p))
    out['stamp'] = _attempt(lambda: make(cfg, ckpt).score(folder_pool(pool_dir)))
    ps.file_stamp = real_stamp
    # 4. a cache_dir that is not shared
    cache = osp.join(tmp, 'cache' if rank == 0 else 'cache_rank1_local')
    out['cache'] = _attempt(lambda: make(cfg, ckpt, cache_dir=cache).score(
        folder_pool(pool_dir)))
    # 5. a pipeline error on rank 1 only: both ranks stop with it (none waits forever)
    real_apply = ps.ScoreView._apply
    if rank == 1:
        ps.ScoreView._apply = lambda self, index, path, info: dict(
            index=index, kind='pipeline', error=f'injected on rank 1 at {path}')
    out['error'] = _attempt(lambda: make(cfg, ckpt).score(folder_pool(pool_dir)))
    ps.ScoreView._apply = real_apply
    with open(osp.join(tmp, f'rank{rank}.json'), 'w') as f:
        json.dump(out, f)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_resume_a_partial_cache_exactly_and_refuse_different_setups(tmp_path,
                                                                               repo_root):
    import torch.multiprocessing as mp
    from model_utils import randomise_bn

    from mmseg_dfss.core import build_frozen_segmentor
    torch.manual_seed(0)
    cfg = load_model_config(osp.join(repo_root, TEACHER)).to_dict()
    ckpt = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': randomise_bn(build_frozen_segmentor(cfg, allow_random_teacher=True)).state_dict()}, ckpt)
    pool_dir = write_pool(str(tmp_path / 'pool'), bad=1)
    copy_dir = shutil.copytree(pool_dir, str(tmp_path / 'pool_copy'))

    # 1 process: the reference, and a cache that the 2-process run resumes
    cache = str(tmp_path / 'cache')
    ref = make(cfg, ckpt, cache_dir=cache).score(folder_pool(pool_dir))
    (folder, ) = [d for d in os.listdir(cache) if d.startswith('ads-')]
    part = osp.join(cache, folder, 'part-0.jsonl')
    with open(part) as f:
        lines = f.readlines()
    with open(part, 'w') as f:
        f.writelines(lines[:8])  # an interrupted run: 8 of N + 1 scored

    mp.start_processes(_worker, args=(2, str(tmp_path), cfg, ckpt, pool_dir, copy_dir),
                       nprocs=2, join=True, start_method='spawn')
    outs = []
    for rank in range(2):
        with open(tmp_path / f'rank{rank}.json') as f:
            outs.append(json.load(f))

    assert outs[0]['scores'] == outs[1]['scores']  # every rank: the same complete scores
    assert outs[0]['errors'] == outs[1]['errors'] == {str(N): ref.errors[N]}
    scores = np.array([np.nan if s is None else s for s in outs[0]['scores']])
    assert np.isfinite(np.delete(scores, N)).all(), 'a readable image was never scored'
    np.testing.assert_allclose(np.delete(scores, N), np.delete(ref.scores, N), rtol=SCORE_RTOL)
    assert outs[0]['selected'] == outs[1]['selected']
    assert_same_selection(select_lowest(ref.scores, EPS), ref.scores, outs[0]['selected'],
                          SCORE_RTOL)
    # the missing images were split between the ranks and appended to the one cache
    counts = [sum(1 for _ in open(osp.join(cache, folder, f'part-{r}.jsonl'))) for r in (0, 1)]
    assert counts[0] - 8 + counts[1] == N + 1 - 8 and counts[1] > 0

    for out in outs:  # refused on every rank, naming what differs
        assert out['path'].startswith('SetupMismatchError') and "000.png' on rank 0 but" \
            in out['path'] and 'pool_copy' in out['path'], out['path']
        assert out['stamp'].startswith('SetupMismatchError') and '005.png' in out['stamp'] \
            and 'file stamps' in out['stamp'], out['stamp']
        assert out['cache'].startswith('SetupMismatchError') and 'is not shared between ranks' \
            in out['cache'] and 'rank 1' in out['cache'] and 'cache_rank1_local' \
            in out['cache'], out['cache']
    assert outs[1]['error'].startswith('ScorePipelineError: ADS: injected on rank 1')
    assert outs[0]['error'].startswith('ScorePipelineError: (on rank 1) ADS: injected on rank 1')
