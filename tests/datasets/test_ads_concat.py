"""ADSDataset over several pools (MMEngine's ConcatDataset): one eps cut over all
sources, per-source counts, per-source score cache, each source's own pipeline."""
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS
from pool_families import scene_teacher_checkpoint, write_family

from mmseg_dfss.core import PoolScorer
from mmseg_dfss.core.pool_compare import compare_pools
from mmseg_dfss.datasets import ADSDataset

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
SCORE_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
EPS = 9  # the 9 scenes of the two sources


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


@pytest.fixture(scope='module')
def pools(tmp_path_factory, repo_root):
    """Source a: 5 scenes + 3 noise; source b: 4 scenes (first, so the boundary
    between the sources is a scene), 4 posterized scenes and a corrupt file."""
    root = str(tmp_path_factory.mktemp('concat'))
    teacher_cfg = osp.join(repo_root, TEACHER)
    ckpt = scene_teacher_checkpoint(teacher_cfg, root)
    write_family(osp.join(root, 'a'), 'scene', 5, seed=11, prefix='s')
    write_family(osp.join(root, 'a'), 'noise', 3, seed=12, prefix='z')
    write_family(osp.join(root, 'b'), 'scene', 4, seed=13, prefix='a')
    write_family(osp.join(root, 'b'), 'posterized', 4, seed=14, prefix='p')
    with open(osp.join(root, 'b', 'zz_broken.png'), 'wb') as f:
        f.write(b'not a png')
    return dict(root=root, ckpt=ckpt, teacher_cfg=teacher_cfg)


def pool_cfg(folder, pipeline=None):
    return dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=folder),
                pipeline=pipeline if pipeline is not None else SCORE_PIPELINE)


def ads_cfg(pools, dataset, cache, **kw):
    cfg = dict(type='ADSDataset', dataset=dataset, teacher=pools['teacher_cfg'],
               teacher_checkpoint=pools['ckpt'], num_samples=EPS,
               score_pipeline=SCORE_PIPELINE, score_batch_size=3, cache_dir=cache,
               max_unreadable=0.5)
    cfg.update(kw)
    return cfg


def concat(pools, pipelines=(None, None)):
    return dict(type='ConcatDataset',
                datasets=[pool_cfg(osp.join(pools['root'], s), p)
                          for s, p in zip('ab', pipelines)])


def test_one_cut_over_all_sources_as_compare_pools_merges(pools, tmp_path):
    cache = str(tmp_path / 'cache')
    ds = DATASETS.build(ads_cfg(pools, concat(pools), cache, source_names=['a', 'b']))
    scorer = PoolScorer(pools['teacher_cfg'], pools['ckpt'], score_pipeline=SCORE_PIPELINE,
                        cache_dir=cache, progress=False, max_unreadable=0.5)
    sources = [DATASETS.build(pool_cfg(osp.join(pools['root'], s))) for s in 'ab']
    summary, details = compare_pools(list(zip('ab', sources)), scorer, EPS, progress=False)
    # a scene teacher keeps the scenes: all 5 of a, all 4 of b (b's first image included)
    kept = [osp.relpath(ds.get_data_info(i)['img_path'], pools['root']) for i in range(len(ds))]
    assert sorted(kept) == sorted([f'a/s_{k:03d}.png' for k in range(5)]
                                  + [f'b/a_{k:03d}.png' for k in range(4)])
    assert ds.source_counts() == {'a': 5, 'b': 4}
    assert {n: summary['pools'][n]['selected_in_merge'] for n in 'ab'} == {'a': 5, 'b': 4}
    # the same images and distances as the comparison's merge
    want = np.concatenate([np.flatnonzero(details[n]['selected']) + k * 8
                           for k, n in enumerate('ab')])
    assert sorted(ds.selected.tolist()) == want.tolist()
    merged = np.concatenate([details[n]['scores'] for n in 'ab'])
    np.testing.assert_allclose(ds.result.scores, merged, rtol=1e-6)
    # the unreadable file of b is reported at its index in the concatenation
    assert list(ds.result.errors) == [16]
    assert ds.result.paths[16].endswith('zz_broken.png')


def test_each_source_scored_through_its_own_cache_entry(pools, tmp_path):
    cache = str(tmp_path / 'cache')
    ADSDataset(**{k: v for k, v in ads_cfg(pools, pool_cfg(osp.join(pools['root'], 'a')),
                                           cache, num_samples=2).items() if k != 'type'})
    only_a = {d for d in os.listdir(cache) if d.startswith('ads-')}
    DATASETS.build(ads_cfg(pools, concat(pools), cache))
    with_b = {d for d in os.listdir(cache) if d.startswith('ads-')}
    assert only_a < with_b and len(with_b) == 2  # a's scores reused, b's added
    DATASETS.build(ads_cfg(pools, pool_cfg(osp.join(pools['root'], 'b')), cache,
                           num_samples=2))
    assert {d for d in os.listdir(cache) if d.startswith('ads-')} == with_b  # b alone finds the entry the concat wrote


def test_samples_go_through_their_source_pipeline(pools, tmp_path):
    resize = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(32, 32)),
              dict(type='PackSegInputs')]
    ds = DATASETS.build(ads_cfg(pools, concat(pools, (resize, None)), str(tmp_path / 'c')))
    bounds = 8
    for i in range(len(ds)):
        item = ds[i]
        meta = item['data_samples'].metainfo
        assert meta['pool_index'] == ds.selected[i]
        assert meta['ads_distance'] == ds.result.scores[ds.selected[i]]
        side = 32 if ds.selected[i] < bounds else 48
        assert tuple(item['inputs'].shape[1:]) == (side, side)


def test_random_strategy_and_default_source_names(pools, tmp_path):
    ds = DATASETS.build(ads_cfg(pools, concat(pools), str(tmp_path / 'c'), strategy='random'))
    counts = ds.source_counts()
    assert list(counts) == ['0:UnlabeledImageDataset', '1:UnlabeledImageDataset']
    assert sum(counts.values()) == EPS


def test_source_names_must_match_the_sources(pools, tmp_path):
    with pytest.raises(ValueError, match=r'source_names must be 2 distinct names'):
        DATASETS.build(ads_cfg(pools, concat(pools), str(tmp_path / 'c'),
                               source_names=['only_one'], lazy_init=True))
    with pytest.raises(TypeError, match=r'BaseDataset or a ConcatDataset'):
        ADSDataset(dataset=[1, 2], teacher=pools['teacher_cfg'], num_samples=1)
