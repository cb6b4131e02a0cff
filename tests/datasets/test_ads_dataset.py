"""ADSDataset: scoring a pool, selection, Eq. 11 weights, strategies, cache, bad input."""
import os
import os.path as osp
import pickle

import mmcv
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from model_utils import eq9_distance
from torch.utils.data import DataLoader

from mmseg_dfss.core import PoolScorer, build_frozen_segmentor, eq11_weights, load_model_config
from mmseg_dfss.core.bn_stats import SCORE_RTOL
from mmseg_dfss.core.selection import select_lowest
from mmseg_dfss.datasets import ADSDataset

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
SIZES = [(40, 56), (48, 48), (40, 56), (56, 40), (48, 48), (40, 56), (32, 64), (48, 48),
         (40, 56), (56, 40)]
SCORE_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
TRAIN_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='RandomFlip', prob=0.5),
                  dict(type='PackSegInputs')]


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


@pytest.fixture(scope='module')
def teacher_cfg(repo_root):
    """The teacher's config, read once (reading it is much of a tiny scoring's time)."""
    return load_model_config(osp.join(repo_root, TEACHER)).to_dict()


@pytest.fixture(scope='module')
def ckpt(teacher_ckpt):
    """The session's random teacher (seed 0) with spread-out BN statistics."""
    return teacher_ckpt


@pytest.fixture(scope='module')
def pool_dir(tmp_path_factory):
    """10 images of mixed sizes, plus a corrupt, a zero-byte and a text file."""
    root = tmp_path_factory.mktemp('pool')
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[:, : w // 2] = img[:, : w // 2] // (i + 1)  # images differ in statistics
        mmcv.imwrite(img, str(root / f'img{i:02d}.png'))
    (root / 'bad_corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 40)
    (root / 'bad_empty.jpg').write_bytes(b'')
    (root / 'bad_text.png').write_text('not an image')
    return str(root)


def pool_cfg(pool_dir, pipeline=TRAIN_PIPELINE):
    return dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=pool_dir),
                pipeline=pipeline)


def ads(pool_dir, teacher_cfg, ckpt, tmp_path, **kw):
    args = dict(dataset=pool_cfg(pool_dir), teacher=teacher_cfg, teacher_checkpoint=ckpt,
                num_samples=4, score_pipeline=SCORE_PIPELINE, score_batch_size=4,
                cache_dir=str(tmp_path / 'cache'), max_unreadable=0.5)  # 3 of 13 are bad
    args.update(kw)
    return ADSDataset(**args)


def good_indices(ds):
    return [i for i in range(len(ds.result.paths)) if 'bad_' not in ds.result.paths[i]]


def test_scores_equal_each_image_scored_alone_any_batch_size(pool_dir, teacher_cfg, ckpt):
    from mmseg_dfss.datasets import UnlabeledImageDataset
    pool = UnlabeledImageDataset(data_prefix=dict(img_path=pool_dir), pipeline=[])
    results = [PoolScorer(teacher_cfg, ckpt, score_pipeline=SCORE_PIPELINE, batch_size=bs,
                          progress=False, max_unreadable=0.5).score(pool) for bs in (1, 3, 16)]
    # reference: every image alone through the teacher's preprocessor and BN hooks
    # (Eq. 9 in numpy, tests/model_utils.py)
    model = build_frozen_segmentor(teacher_cfg, ckpt)
    for i, path in enumerate(results[0].paths):
        if 'bad_' in path:
            continue
        img = mmcv.imread(path)
        data = model.data_preprocessor(
            dict(inputs=[torch.from_numpy(img).permute(2, 0, 1).contiguous()]), False)
        ref, _ = eq9_distance(model, data['inputs'])
        for r in results:
            assert r.scores[i] == pytest.approx(ref, rel=SCORE_RTOL), (path, r)
    assert all(len(r.errors) == 3 for r in results)


def test_selection_weights_and_metainfo(pool_dir, teacher_cfg, ckpt, tmp_path):
    ds = ads(pool_dir, teacher_cfg, ckpt, tmp_path, num_samples=5)
    scores = ds.result.scores
    good = good_indices(ds)
    expected = sorted(good, key=lambda i: (scores[i], i))[:5]
    assert list(ds.selected) == expected and len(ds) == 5
    d = scores[expected]
    np.testing.assert_allclose(ds.weights, 1 - (d - d.min()) / (d.max() - d.min()))
    assert ds.weights[0] == 1.0 and ds.weights[-1] == 0.0
    for k in range(5):
        sample = ds[k]['data_samples']
        assert sample.metainfo['ads_distance'] == pytest.approx(d[k])
        assert sample.metainfo['ads_weight'] == pytest.approx(ds.weights[k])
        assert sample.img_path == ds.result.paths[expected[k]]
        info = ds.get_data_info(k)
        assert info['ads_weight'] == pytest.approx(ds.weights[k])
    # unreadable files: skipped, counted, never selected
    assert sorted(osp.basename(ds.result.paths[i]) for i in ds.result.errors) == [
        'bad_corrupt.png', 'bad_empty.jpg', 'bad_text.png']
    assert all(np.isnan(scores[i]) for i in ds.result.errors)


def test_eq11_and_tie_breaking():
    np.testing.assert_allclose(eq11_weights([1.0, 2.0, 3.0]), [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(eq11_weights([2.0, 2.0]), [1.0, 1.0])
    scores = np.array([3.0, 1.0, np.nan, 1.0, np.inf, 0.5, -np.inf])
    assert list(select_lowest(scores, 3)) == [5, 1, 3]
    with pytest.raises(ValueError, match=r'num_samples \(eps\) = 5 is larger than the 4'):
        select_lowest(scores, 5)


def test_random_strategy_is_seeded_and_never_picks_unreadable(pool_dir, teacher_cfg, tmp_path):
    kw = dict(strategy='random', num_samples=10, cache_dir=None)
    a = ads(pool_dir, teacher_cfg, None, tmp_path, **kw)
    b = ads(pool_dir, teacher_cfg, None, tmp_path, **kw)
    c = ads(pool_dir, teacher_cfg, None, tmp_path, seed=1, **kw)
    assert list(a.selected) == list(b.selected)
    assert sorted(a.selected) == good_indices(a)  # all 10 readable ones, none of the bad
    assert list(a.selected) != list(c.selected)
    np.testing.assert_array_equal(a.weights, np.ones(10))
    small = ads(pool_dir, teacher_cfg, None, tmp_path, strategy='random', num_samples=3,
                cache_dir=None)
    assert list(small.selected) == list(a.selected[:3])


def test_confidence_strategy_matches_dfnd_rule(pool_dir, teacher_cfg, ckpt, tmp_path):
    ds = ads(pool_dir, teacher_cfg, ckpt, tmp_path, strategy='confidence', num_samples=3)
    model = build_frozen_segmentor(teacher_cfg, ckpt)
    for i in good_indices(ds)[:3]:
        img = mmcv.imread(ds.result.paths[i])
        data = model.data_preprocessor(
            dict(inputs=[torch.from_numpy(img).permute(2, 0, 1).contiguous()]), False)
        with torch.no_grad():
            x = model.extract_feat(data['inputs'])
            logits = torch.nn.functional.interpolate(
                model.decode_head.forward(x), img.shape[:2], mode='bilinear',
                align_corners=False)
        p = torch.softmax(logits.double(), 1).max(1).values
        assert ds.result.scores[i] == pytest.approx((-torch.log(p)).mean().item(),
                                                    rel=SCORE_RTOL)
    ads_ds = ads(pool_dir, teacher_cfg, ckpt, tmp_path, num_samples=3)
    assert not np.allclose(ads_ds.result.scores[good_indices(ds)],
                           ds.result.scores[good_indices(ds)])


def test_cache_reuse_invalidation_and_resume(pool_dir, teacher_cfg, ckpt, tmp_path,
                                             monkeypatch):
    scored = []
    real_run = PoolScorer._run

    def spy(self, pool, plan, *args):  # plan: [(input shape, [pool indices]), ...]
        scored.append([i for _, idx in plan for i in idx])
        return real_run(self, pool, plan, *args)

    monkeypatch.setattr(PoolScorer, '_run', spy)
    first = ads(pool_dir, teacher_cfg, ckpt, tmp_path)
    assert len(scored[-1]) == 13
    again = ads(pool_dir, teacher_cfg, ckpt, tmp_path)
    assert scored[-1] == []  # identical setup: nothing scored
    np.testing.assert_array_equal(first.result.scores, again.result.scores)
    assert list(first.selected) == list(again.selected)
    assert again.result.errors.keys() == first.result.errors.keys()

    # interrupted run: only the first 5 lines survived -> the other 8 are scored
    (cache_dir, ) = [d for d in os.listdir(tmp_path / 'cache') if d.startswith('ads-')]
    part = tmp_path / 'cache' / cache_dir / 'part-0.jsonl'
    lines = part.read_text().splitlines(keepends=True)
    part.write_text(''.join(lines[:5]) + lines[5][:10])
    resumed = ads(pool_dir, teacher_cfg, ckpt, tmp_path)
    assert len(scored[-1]) == 8
    # rescored images share batches with others now: float32 kernels differ in the last bits
    np.testing.assert_allclose(resumed.result.scores, first.result.scores, rtol=SCORE_RTOL)

    # another setup has a cache of its own beside this one (each part of the key alone:
    # tests/core/test_score_cache_key.py): the original setup's cache stays valid
    ads(pool_dir, teacher_cfg, ckpt, tmp_path, bn_layers=[r'^backbone\.layer4\.'])
    assert len(scored[-1]) == 13
    ads(pool_dir, teacher_cfg, ckpt, tmp_path)
    assert scored[-1] == []


def test_lazy_init_pickling_and_dataloader_workers(pool_dir, teacher_cfg, ckpt, tmp_path):
    ds = ads(pool_dir, teacher_cfg, ckpt, tmp_path, lazy_init=True)
    assert not ds._fully_initialized
    assert len(ds) == 4 and ds._fully_initialized
    clone = pickle.loads(pickle.dumps(ds))
    assert list(clone.selected) == list(ds.selected)
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=pseudo_collate)
    weights = [s.metainfo['ads_weight'] for batch in loader for s in batch['data_samples']]
    np.testing.assert_allclose(weights, ds.weights)


def test_clear_errors(pool_dir, teacher_cfg, ckpt, tmp_path):
    with pytest.raises(ValueError, match=r'num_samples \(eps\) = 11 is larger than the 10'):
        ads(pool_dir, teacher_cfg, ckpt, tmp_path, num_samples=11)
    with pytest.raises(ValueError, match='selects no BatchNorm layer'):
        ads(pool_dir, teacher_cfg, ckpt, tmp_path, bn_layers=[r'^neck\.'])
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        ads(pool_dir, teacher_cfg, missing, tmp_path)
    state = torch.load(ckpt, weights_only=True)['state_dict']
    state['backbone.extra.weight'] = torch.zeros(1)
    state.pop('decode_head.conv_seg.bias')
    bad = str(tmp_path / 'bad.pth')
    torch.save({'state_dict': state}, bad)
    with pytest.raises(KeyError, match=r'(?s)bad\.pth.*decode_head\.conv_seg\.bias.*'
                       r'backbone\.extra\.weight'):
        ads(pool_dir, teacher_cfg, bad, tmp_path)
    with pytest.raises(ValueError, match='strategy must be one of'):
        ads(pool_dir, teacher_cfg, ckpt, tmp_path, strategy='entropy')
