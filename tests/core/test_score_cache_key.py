"""Every part of the ADS score cache key, one test each: a rerun that changes only
that part scores the pool again and gets the new setup's scores, never the cached
ones of the old setup; a rerun that changes nothing scores nothing.

Not tested alone: the class count (it must match the teacher's, so it never changes
without the teacher config) and the pool's image count (it never changes without
the path list)."""
import copy
import os
import os.path as osp
import shutil

import cv2
import mmcv
import numpy as np
import pytest
import torch
from model_utils import randomise_bn

from mmseg_dfss.core import PoolScorer, build_frozen_segmentor, load_model_config
from mmseg_dfss.core import pool_scorer as ps
from mmseg_dfss.datasets import UnlabeledImageDataset

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
N = 4


@pytest.fixture(scope='module')
def teacher(repo_root, tmp_path_factory):
    """(config dict, checkpoint, another checkpoint of the same architecture)."""
    cfg = load_model_config(osp.join(repo_root, TEACHER)).to_dict()
    folder = tmp_path_factory.mktemp('teacher')
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = randomise_bn(build_frozen_segmentor(cfg, allow_random_teacher=True), seed)
        paths.append(str(folder / f'teacher{seed}.pth'))
        torch.save({'state_dict': model.state_dict()}, paths[-1])
    return cfg, paths[0], paths[1]


@pytest.fixture(scope='module')
def baseline(teacher, tmp_path_factory):
    """A pool of N uncompressed PNGs (a rewrite keeps the size in bytes) and the
    caches of its first 'ads' and 'random' scorings."""
    root = tmp_path_factory.mktemp('key')
    pool = root / 'pool'
    pool.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N):
        img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) // (i + 1)
        mmcv.imwrite(img, str(pool / f'{i}.png'), [cv2.IMWRITE_PNG_COMPRESSION, 0])
    cache = str(root / 'cache')
    first = {s: run(teacher, str(pool), cache, strategy=s) for s in ('ads', 'random')}
    assert all(count(r) == N for r in first.values() if r.strategy != 'random')
    return str(pool), cache, first


def run(teacher, pool, cache, cfg=None, ckpt=None, **kw):
    args = dict(score_pipeline=PIPELINE, batch_size=N, cache_dir=cache, progress=False)
    args.update(kw)
    if args.get('strategy') == 'random':
        ckpt = None
    elif ckpt is None:
        ckpt = teacher[1]
    return PoolScorer(cfg or teacher[0], ckpt, **args).score(
        UnlabeledImageDataset(data_prefix=dict(img_path=pool), pipeline=[]))


def count(result):
    """Images this scoring ran through the teacher (0: all came from the cache)."""
    return sum(size for _, size in result.batches)


@pytest.fixture
def setup(baseline, tmp_path):
    """The baseline pool (read only: its paths are part of the key) and a private
    copy of the baseline caches."""
    pool, cache, first = baseline
    shutil.copytree(cache, tmp_path / 'cache')
    return pool, str(tmp_path / 'cache'), first


def test_an_unchanged_setup_is_served_from_the_cache(teacher, setup):
    pool, cache, first = setup
    again = run(teacher, pool, cache)
    assert count(again) == 0
    np.testing.assert_array_equal(again.scores, first['ads'].scores)


def scored_again(teacher, pool, cache, first, **changed):
    """The scoring with one part changed ran every image again and got other scores
    than the cached ones of the old setup."""
    res = run(teacher, pool, cache, **changed)
    assert count(res) == N
    assert not np.allclose(res.scores, first.scores, rtol=1e-3)
    return res


def test_teacher_config(teacher, setup):
    """Same weights, another config (its normalisation): other scores."""
    pool, cache, first = setup
    cfg = copy.deepcopy(teacher[0])
    cfg['data_preprocessor']['mean'] = [100.0, 110.0, 120.0]
    scored_again(teacher, pool, cache, first['ads'], cfg=cfg)


def test_teacher_weights(teacher, setup, tmp_path):
    """Other weights in the same checkpoint file: the key holds the weights' digest,
    not the checkpoint's name."""
    pool, cache, first = setup
    path = str(tmp_path / 'teacher.pth')
    shutil.copyfile(teacher[1], path)
    run(teacher, pool, cache, ckpt=path)
    shutil.copyfile(teacher[2], path)
    scored_again(teacher, pool, cache, first['ads'], ckpt=path)


def test_score_pipeline(teacher, setup):
    pool, cache, first = setup
    resize = PIPELINE[:1] + [dict(type='Resize', scale=(16, 16), keep_ratio=False)] + \
        PIPELINE[1:]
    scored_again(teacher, pool, cache, first['ads'], score_pipeline=resize)


def test_bn_layers(teacher, setup):
    pool, cache, first = setup
    scored_again(teacher, pool, cache, first['ads'], bn_layers=[r'^backbone\.layer4\.'])


def test_strategy(teacher, setup):
    pool, cache, first = setup
    scored_again(teacher, pool, cache, first['ads'], strategy='confidence')


def test_scorer_version(teacher, setup, monkeypatch):
    """A new way of computing a score (SCORER_VERSION bumped) never reads old scores."""
    pool, cache, first = setup
    monkeypatch.setattr(ps, 'SCORER_VERSION', ps.SCORER_VERSION + 1)
    assert count(run(teacher, pool, cache)) == N


def test_image_stamp(teacher, baseline, tmp_path):
    """One image rewritten in place (other pixels, same size in bytes, later mtime)."""
    pool, cache = str(tmp_path / 'pool'), str(tmp_path / 'cache')
    shutil.copytree(baseline[0], pool)
    first = run(teacher, pool, cache)
    path = osp.join(pool, '2.png')
    st = os.stat(path)
    mmcv.imwrite(255 - mmcv.imread(path), path, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert os.stat(path).st_size == st.st_size
    res = run(teacher, pool, cache)
    assert count(res) == N
    assert abs(res.scores[2] - first.scores[2]) > 1e-3 * abs(first.scores[2])


def test_seed_of_random(teacher, setup):
    """'random' runs no teacher: its keys for another seed are drawn, not read."""
    pool, cache, first = setup
    res = run(teacher, pool, cache, strategy='random', seed=1)
    fresh = run(teacher, pool, None, strategy='random', seed=1)
    np.testing.assert_array_equal(res.scores, fresh.scores)
    assert not np.array_equal(res.scores, first['random'].scores)
    again = run(teacher, pool, cache, strategy='random', seed=0)
    np.testing.assert_array_equal(again.scores, first['random'].scores)
