"""ADSHeldOutDataset: the pool images ranked just after the training eps, from the
same ADS scores (nothing scored twice)."""
import glob
import os.path as osp

import pytest
from mmengine.registry import init_default_scope

from mmseg_dfss.datasets import ADSDataset, ADSHeldOutDataset

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
SCORE_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def args(synthetic_root, teacher_ckpt, repo_root, cache, **kw):
    a = dict(dataset=dict(type='SyntheticPoolDataset', data_root=f'{synthetic_root}/pool',
                          pipeline=[]),
             teacher=osp.join(repo_root, TEACHER), teacher_checkpoint=teacher_ckpt,
             score_pipeline=SCORE_PIPELINE, score_batch_size=16, cache_dir=str(cache))
    a.update(kw)
    return a


def test_held_out_ranks_follow_the_training_eps(synthetic_root, teacher_ckpt, repo_root,
                                                tmp_path):
    cache = tmp_path / 'cache'
    train = ADSDataset(**args(synthetic_root, teacher_ckpt, repo_root, cache, num_samples=16))
    parts = glob.glob(str(cache / 'ads-*' / 'part-*.jsonl'))
    lines = sum(1 for p in parts for _ in open(p))
    held = ADSHeldOutDataset(**args(synthetic_root, teacher_ckpt, repo_root, cache,
                                    num_skipped=16, num_samples=8))
    # the scores came from the training run's cache: no image was scored again
    assert sum(1 for p in parts for _ in open(p)) == lines == 64
    assert len(held) == 8 and not set(held.selected) & set(train.selected)
    both = ADSDataset(**args(synthetic_root, teacher_ckpt, repo_root, cache, num_samples=24))
    assert list(held.selected) == list(both.selected[16:])
    assert held.distances.min() >= train.distances.max()
    with pytest.raises(ValueError, match=r'num_skipped \(60, the training eps\) \+ '
                                         r'num_samples \(8\) is larger than the 64'):
        ADSHeldOutDataset(**args(synthetic_root, teacher_ckpt, repo_root, cache,
                                 num_skipped=60, num_samples=8))
