"""PoolScorer at scale: batches planned from image sizes (full batches on a
mixed-size pool), scores independent of batch size and order, errors told apart
(unreadable / pipeline / transient I/O / too many unreadable), 'random' without
decoding. The 2-process runs are in test_dist_scoring.py."""
import errno
import math
import os
import os.path as osp
from collections import defaultdict

import mmcv
import numpy as np
import pytest
import torch
from dataset_layouts import make_coco
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmseg.registry import TRANSFORMS
from model_utils import randomise_bn

from mmseg_dfss.core import PoolScorer, batch_plan, build_frozen_segmentor, load_model_config
from mmseg_dfss.core.bn_stats import SCORE_RTOL
from mmseg_dfss.core.pool_errors import ScoreIOError, ScorePipelineError, TooManyUnreadableError
from mmseg_dfss.datasets import COCOPoolDataset, UnlabeledImageDataset

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
# (h, w): 3 common shapes and 16 rare ones (more than the 4-batch window of
# shapes that ADS keeps open for images of unforeseen shape), 32 images
SHAPES = [(24, 32)] * 7 + [(32, 24)] * 5 + [(28, 28)] * 4 + [(20 + k, 40 - k) for k in range(16)]
N = len(SHAPES)


@TRANSFORMS.register_module(force=True)
class ScaleTestKeyError(BaseTransform):
    """A transform with a config bug: it reads a key no sample has."""
    calls = 0

    def transform(self, results):
        type(self).calls += 1
        return results['no_such_key']


@TRANSFORMS.register_module(force=True)
class ScaleTestFlakyLoad(LoadImageFromFile):
    """LoadImageFromFile whose reads of files named ``*<target>*`` fail with
    ``OSError(err)`` the first ``fails`` times (counted in ``state_dir``, so
    DataLoader workers share the count); a file ``healed`` there ends it."""

    def __init__(self, state_dir, target, err, fails, **kwargs):
        super().__init__(**kwargs)
        self.state_dir, self.target, self.err, self.fails = state_dir, target, err, fails

    def transform(self, results):
        name = osp.basename(results['img_path'])
        if self.target in name and not osp.exists(osp.join(self.state_dir, 'healed')):
            tries = [f for f in os.listdir(self.state_dir) if f.startswith(name)]
            if len(tries) < self.fails:
                open(osp.join(self.state_dir, f'{name}.{len(tries)}'), 'w').close()
                raise OSError(self.err, os.strerror(self.err), results['img_path'])
        return super().transform(results)


@pytest.fixture(scope='module')
def teacher(repo_root, tmp_path_factory):
    """(config dict, checkpoint): the config is read once (reading it is most of
    a tiny scoring's time)."""
    torch.manual_seed(0)
    cfg = load_model_config(osp.join(repo_root, TEACHER)).to_dict()
    model = randomise_bn(build_frozen_segmentor(cfg, allow_random_teacher=True))
    ckpt = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    return cfg, ckpt


def write_pool(root, shapes=SHAPES, bad=0, seed=0):
    """Images of ``shapes`` under shuffled names (the pool order mixes shapes),
    plus ``bad`` corrupt files."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k, j in enumerate(rng.permutation(len(shapes))):
        h, w = shapes[j]
        mmcv.imwrite(rng.integers(0, 256, (h, w, 3), dtype=np.uint8) // (1 + k % 3),
                     osp.join(root, f'{k:03d}.png'))
    for k in range(bad):
        with open(osp.join(root, f'{len(shapes) + k:03d}_bad.png'), 'wb') as f:
            f.write(b'\x89PNG\r\n\x1a\n' + b'\x00' * 40)
    return root


@pytest.fixture(scope='module')
def pool_dir(tmp_path_factory):
    return write_pool(str(tmp_path_factory.mktemp('mixed')))


def folder_pool(root, ann_file=''):
    return UnlabeledImageDataset(data_prefix=dict(img_path=root), ann_file=ann_file,
                                 pipeline=[])


def scorer(teacher, **kw):
    cfg, ckpt = teacher
    args = dict(score_pipeline=PIPELINE, batch_size=3, progress=False)
    args.update(kw)
    s = PoolScorer(cfg, ckpt, **args)
    s.retry_delay = 0.01
    return s


def by_path(res):
    return dict(zip(res.paths, res.scores.tolist()))


def test_every_batch_but_the_last_of_each_shape_is_full(teacher, pool_dir, tmp_path,
                                                        monkeypatch):
    reads = []
    real = batch_plan.read_image_size
    monkeypatch.setattr(batch_plan, 'read_image_size', lambda p: reads.append(p) or real(p))
    cache = str(tmp_path / 'cache')
    res = scorer(teacher, cache_dir=cache, num_workers=2).score(folder_pool(pool_dir))
    assert np.isfinite(res.scores).all() and len(reads) == len(SHAPES)
    counts = defaultdict(int)
    for h, w in SHAPES:
        counts[(3, h, w)] += 1
    sizes = defaultdict(list)
    for shape, size in res.batches:
        sizes[shape].append(size)
    assert set(sizes) == set(counts)
    for shape, n in counts.items():
        # as few batches as the shape count allows: all full but the last
        assert sorted(sizes[shape], reverse=True) == [3] * (n // 3) + ([n % 3] if n % 3 else [])
    assert len(res.batches) == sum(math.ceil(n / 3) for n in counts.values())

    # a resumed run reads no header again: the sizes are kept beside the cache
    (folder, ) = [d for d in os.listdir(cache) if d.startswith('ads-')]
    os.remove(osp.join(cache, folder, 'part-0.jsonl'))
    reads.clear()
    again = scorer(teacher, cache_dir=cache).score(folder_pool(pool_dir))
    assert reads == [] and len(again.batches) == len(res.batches)
    np.testing.assert_allclose(again.scores, res.scores, rtol=SCORE_RTOL)
    # a file with a new stamp: its header (only) is read again
    touched = osp.join(pool_dir, '007.png')
    st = os.stat(touched)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    scorer(teacher, cache_dir=cache).score(folder_pool(pool_dir))
    assert reads == [touched]


def test_coco_sizes_come_from_the_annotation_file(teacher, tmp_path, monkeypatch):
    root = make_coco(str(tmp_path))
    pool = COCOPoolDataset(data_root=root, ann_file='annotations/instances_train2017.json',
                           data_prefix=dict(img_path='train2017'), pipeline=[],
                           index_dir=str(tmp_path / 'index'))

    def no_header(path):
        raise AssertionError(f'header of {path} read')

    monkeypatch.setattr(batch_plan, 'read_image_size', no_header)
    res = scorer(teacher, batch_size=5).score(pool)
    assert np.isfinite(res.scores).all() and res.batches == [((3, 24, 32), 5)]


def test_scores_do_not_depend_on_batch_size_or_order(teacher, pool_dir, tmp_path):
    names = sorted(os.listdir(pool_dir))
    listing = tmp_path / 'reversed.txt'
    listing.write_text('\n'.join(reversed(names)) + '\n')
    a = by_path(scorer(teacher, batch_size=1).score(folder_pool(pool_dir)))
    b = by_path(scorer(teacher, batch_size=4).score(folder_pool(pool_dir, str(listing))))
    assert set(a) == set(b) and len(a) == len(SHAPES)
    for path, score in a.items():
        assert b[path] == pytest.approx(score, rel=SCORE_RTOL), path


@pytest.mark.parametrize('workers', [0, 2])
def test_unreadable_is_skipped_counted_and_cached(teacher, tmp_path, workers, monkeypatch):
    pool = folder_pool(write_pool(str(tmp_path / 'pool'), bad=1))  # 1 of 33: under 5%
    cache = str(tmp_path / 'cache')
    res = scorer(teacher, cache_dir=cache, num_workers=workers).score(pool)
    assert [osp.basename(res.paths[i]) for i in res.errors] == [f'{N:03d}_bad.png']
    assert 'failed to load image' in res.errors[N] and np.isnan(res.scores[N])
    assert np.isfinite(np.delete(res.scores, N)).all()
    monkeypatch.setattr(PoolScorer, '_run', lambda self, pool, plan, *a: pytest.fail(
        'scored again') if any(idx for _, idx in plan) else ({}, []))
    again = scorer(teacher, cache_dir=cache).score(pool)  # the skip is cached
    assert again.errors == res.errors


@pytest.mark.parametrize('workers', [0, 2])
def test_more_than_max_unreadable_stops_the_scoring(teacher, tmp_path, workers):
    pool = folder_pool(write_pool(str(tmp_path / 'pool'), bad=2))  # 2 of 34: 5.9%
    with pytest.raises(TooManyUnreadableError, match=r'2 of 34 unreadable — wrong data_root\? '
                       r'\(more than max_unreadable=0\.05'):
        scorer(teacher, num_workers=workers).score(pool)
    res = scorer(teacher, num_workers=workers, max_unreadable=0.1).score(pool)
    assert len(res.errors) == 2
    # a wrong data_root: stops at the first image past the limit, does not load the rest
    coco = COCOPoolDataset(data_root=make_coco(str(tmp_path / 'coco'), write_images=False),
                           ann_file='annotations/instances_train2017.json',
                           data_prefix=dict(img_path='train2017'), pipeline=[],
                           index_dir=None)
    with pytest.raises(TooManyUnreadableError, match=r'at least 1 of 5 unreadable — wrong '
                       r'data_root\?.*000000000010\.jpg'):
        scorer(teacher, num_workers=workers).score(coco)


@pytest.mark.parametrize('workers', [0, 2])
def test_pipeline_error_stops_at_the_first_image_naming_transform_and_file(
        teacher, pool_dir, tmp_path, workers):
    cache = str(tmp_path / 'cache')
    pipe = PIPELINE[:1] + [dict(type='LoadAnnotations')] + PIPELINE[1:]  # labels in a pool
    with pytest.raises(ScorePipelineError, match=r"transform #1 'LoadAnnotations' on "
                       r"'.*\.png' failed: KeyError: 'seg_map_path'"):
        scorer(teacher, score_pipeline=pipe, cache_dir=cache, num_workers=workers).score(
            folder_pool(pool_dir))
    ScaleTestKeyError.calls = 0
    pipe = PIPELINE[:1] + [dict(type='ScaleTestKeyError')] + PIPELINE[1:]
    with pytest.raises(ScorePipelineError, match=r"transform #1 'ScaleTestKeyError' on "
                       r"'.*\.png' failed: KeyError: 'no_such_key'"):
        scorer(teacher, score_pipeline=pipe, cache_dir=cache, num_workers=workers).score(
            folder_pool(pool_dir))
    if workers == 0:
        assert ScaleTestKeyError.calls == 1  # stopped at the first image
    # nothing was cached as a skip
    for folder in os.listdir(cache):
        part = osp.join(cache, folder, 'part-0.jsonl')
        assert not osp.exists(part) or osp.getsize(part) == 0, folder


@pytest.mark.parametrize('err,workers', [(errno.EIO, 0), (errno.EMFILE, 2), (errno.ESTALE, 0)])
def test_transient_io_errors_are_retried_and_never_cached(teacher, pool_dir, tmp_path, err,
                                                         workers):
    ref = by_path(scorer(teacher).score(folder_pool(pool_dir)))
    state = tmp_path / 'state'
    state.mkdir()

    def flaky(fails):
        return [dict(type='ScaleTestFlakyLoad', state_dir=str(state), target='005', err=err,
                     fails=fails)] + PIPELINE[1:]

    res = scorer(teacher, score_pipeline=flaky(2), num_workers=workers).score(
        folder_pool(pool_dir))
    assert not res.errors and len(list(state.iterdir())) == 2  # two failures, then read
    got = by_path(res)
    assert all(got[p] == pytest.approx(ref[p], rel=SCORE_RTOL) for p in ref)

    cache = str(tmp_path / 'cache')
    with pytest.raises(ScoreIOError, match=rf'005\.png.*{os.strerror(err)}.*nothing was cached'):
        scorer(teacher, score_pipeline=flaky(99), cache_dir=cache, num_workers=workers).score(
            folder_pool(pool_dir))
    (state / 'healed').touch()  # the filesystem is back: the image is scored, not skipped
    res = scorer(teacher, score_pipeline=flaky(99), cache_dir=cache).score(
        folder_pool(pool_dir))
    assert not res.errors and np.isfinite(res.scores).all()
    assert by_path(res)[osp.join(pool_dir, '005.png')] == pytest.approx(
        ref[osp.join(pool_dir, '005.png')], rel=SCORE_RTOL)


def test_random_strategy_decodes_no_image(teacher, tmp_path, monkeypatch):
    pool = folder_pool(write_pool(str(tmp_path / 'pool'), bad=1))

    def no_decode(*args, **kwargs):
        raise AssertionError('an image was decoded')

    monkeypatch.setattr(mmcv, 'imfrombytes', no_decode)
    res = scorer(teacher, strategy='random', seed=3).score(pool)
    keys = np.random.default_rng(3).random(len(pool))
    assert list(res.errors) == [N] and 'unreadable image header' in res.errors[N]
    np.testing.assert_array_equal(np.delete(res.scores, N), np.delete(keys, N))
