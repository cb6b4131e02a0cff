"""PoolScorer as configs use it: a pool of many image sizes scored with any batch size
gives each image the score it gets alone (also when more sizes are pending than fit a
batch window), and ``score_num_workers > 0`` loads the images in worker processes and
gives the scores of an in-process run."""
import copy
import functools
import os
import os.path as osp

import mmcv
import numpy as np
import pytest
from mmcv.transforms import BaseTransform
from mmengine.registry import init_default_scope
from mmseg.registry import TRANSFORMS

from mmseg_dfss.core import PoolScorer, load_model_config
from mmseg_dfss.core.bn_stats import SCORE_RTOL
from mmseg_dfss.datasets import UnlabeledImageDataset

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
# 12 sizes, 3 images each, interleaved: at batch 4 every size is still short of a
# full batch when 16+ images are pending
SHAPES = [(24 + 4 * (k % 4), 24 + 4 * (k // 4)) for k in range(12)]


@TRANSFORMS.register_module(force=True)
class RecordLoaderPid(BaseTransform):
    """Test probe: appends the id of the process that loads each image to a file."""

    def __init__(self, log):
        self.log = log

    def transform(self, results):
        with open(self.log, 'a') as f:
            f.write(f'{os.getpid()}\n')
        return results


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


@pytest.fixture(scope='module')
def mixed_pool(tmp_path_factory):
    root = tmp_path_factory.mktemp('mixed_pool')
    rng = np.random.default_rng(0)
    for i in range(3 * len(SHAPES)):
        h, w = SHAPES[i % len(SHAPES)]
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[:, : w // 2] //= (i % 5) + 1  # images differ in statistics
        mmcv.imwrite(img, str(root / f'{i:03d}.png'))
    return UnlabeledImageDataset(data_prefix=dict(img_path=str(root)), pipeline=[])


@functools.lru_cache
def teacher_config(repo_root):
    """The teacher's config, read once (reading it is much of a tiny scoring's time)."""
    return load_model_config(osp.join(repo_root, TEACHER)).to_dict()


def score(repo_root, teacher_ckpt, pool, pipeline=PIPELINE, **kw):
    return PoolScorer(copy.deepcopy(teacher_config(repo_root)), teacher_ckpt,
                      score_pipeline=pipeline,
                      progress=False, **kw).score(pool)


def test_mixed_size_pool_scores_do_not_depend_on_batch_size(repo_root, teacher_ckpt,
                                                             mixed_pool):
    alone = score(repo_root, teacher_ckpt, mixed_pool, batch_size=1)
    assert np.isfinite(alone.scores).all() and not alone.errors
    for batch_size in (2, 4, 7):
        batched = score(repo_root, teacher_ckpt, mixed_pool, batch_size=batch_size)
        assert batched.paths == alone.paths
        assert not batched.errors, batch_size
        np.testing.assert_allclose(batched.scores, alone.scores, rtol=SCORE_RTOL,
                                   err_msg=f'batch_size={batch_size}')


def test_loader_workers_load_in_other_processes_with_equal_scores(tmp_path, repo_root,
                                                                  teacher_ckpt, mixed_pool):
    log = str(tmp_path / 'pids.txt')
    probe = PIPELINE[:1] + [dict(type='RecordLoaderPid', log=log)] + PIPELINE[1:]
    in_process = score(repo_root, teacher_ckpt, mixed_pool, probe, batch_size=4)
    with open(log) as f:
        assert set(f.read().split()) == {str(os.getpid())}
    os.remove(log)
    workers = score(repo_root, teacher_ckpt, mixed_pool, probe, batch_size=4, num_workers=2)
    with open(log) as f:
        pids = f.read().split()
    assert len(pids) == len(mixed_pool)  # every image loaded once
    assert len(set(pids)) == 2 and str(os.getpid()) not in pids
    assert workers.paths == in_process.paths and not workers.errors
    np.testing.assert_allclose(workers.scores, in_process.scores, rtol=SCORE_RTOL)


def test_one_scorer_builds_its_teacher_once_for_several_pools(tmp_path, repo_root,
                                                              monkeypatch):
    """compress's pool stage and ADS over a ConcatDataset score pool after pool with one
    scorer: the teacher is built (and its checkpoint read) once."""
    import cv2

    from mmseg_dfss.core import pool_scorer
    init_default_scope('mmseg')
    built = []
    build = pool_scorer.build_frozen_segmentor

    def counting_build(*args, **kwargs):
        built.append(args[0])
        return build(*args, **kwargs)
    monkeypatch.setattr(pool_scorer, 'build_frozen_segmentor', counting_build)
    rng = np.random.default_rng(0)
    pools = []
    for name in ('a', 'b'):
        os.makedirs(tmp_path / name)
        for i in range(2):
            cv2.imwrite(str(tmp_path / name / f'{i}.png'),
                        rng.integers(0, 256, (32, 32, 3), np.uint8))
        pools.append(UnlabeledImageDataset(data_prefix=dict(img_path=str(tmp_path / name)),
                                           pipeline=[]))
    scorer = PoolScorer(osp.join(repo_root, TEACHER), None, score_pipeline=PIPELINE,
                        allow_random_teacher=True, progress=False)
    scores = [scorer.score(p).scores for p in pools]
    assert len(built) == 1 and all(np.isfinite(s).all() and len(s) == 2 for s in scores)
