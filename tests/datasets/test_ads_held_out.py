"""ADSHeldOutDataset: the pool images ranked just after the training eps, from the
same ADS scores (nothing scored twice)."""
import glob
import os.path as osp
import shutil

import numpy as np
import pytest
from PIL import Image
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


@pytest.fixture
def pool(tmp_path, synthetic_root):
    """12 of the synthetic pool's images, copied into a folder the test may change."""
    folder = tmp_path / 'pool'
    folder.mkdir()
    found = sorted(glob.glob(osp.join(synthetic_root, 'pool', '**', '*.png'), recursive=True))
    for k, src in enumerate(found[:12]):
        shutil.copy(src, folder / f'img{k:02d}.png')
    return str(folder)


def folder_args(pool, teacher_ckpt, repo_root, cache, **kw):
    a = args('unused', teacher_ckpt, repo_root, cache, **kw)
    a['dataset'] = dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=pool))
    return a


def held_paths(held):
    return {held.dataset.get_data_info(int(i))['img_path'] for i in held.selected}


def test_a_file_added_after_training_moves_no_trained_image_in(pool, teacher_ckpt, repo_root,
                                                              tmp_path):
    cache = tmp_path / 'cache'
    train = ADSDataset(**folder_args(pool, teacher_ckpt, repo_root, cache, num_samples=4))
    trained = {train.dataset.get_data_info(int(i))['img_path'] for i in train.selected}
    # a new image close to the best one ranks among the first 4: today's cut moves and
    # the image trained on at rank 3 would be rank 4, the first held-out rank
    best = train.dataset.get_data_info(int(train.selected[0]))['img_path']
    img = np.array(Image.open(best))
    img[0, 0] = 255 - img[0, 0]
    Image.fromarray(img).save(osp.join(pool, 'img00_new.png'))
    held = ADSHeldOutDataset(**folder_args(pool, teacher_ckpt, repo_root, cache,
                                           num_skipped=4, num_samples=3))
    today = ADSDataset(**folder_args(pool, teacher_ckpt, repo_root, tmp_path / 'c2',
                                     num_samples=4))
    moved = trained - {today.dataset.get_data_info(int(i))['img_path'] for i in today.selected}
    assert moved, 'the new image did not move the cut'
    assert len(held) == 3 and not held_paths(held) & trained


def test_a_copy_of_a_trained_image_is_not_held_out(pool, teacher_ckpt, repo_root, tmp_path):
    cache = tmp_path / 'cache'
    first = ADSDataset(**folder_args(pool, teacher_ckpt, repo_root, tmp_path / 'c0',
                                     num_samples=4))
    last = first.dataset.get_data_info(int(first.selected[3]))['img_path']
    copy = osp.join(pool, 'zz_copy.png')  # the same bytes: the same score, ranked just after
    shutil.copy(last, copy)
    train = ADSDataset(**folder_args(pool, teacher_ckpt, repo_root, cache, num_samples=4))
    assert train.dataset.get_data_info(int(train.selected[3]))['img_path'] == last
    held = ADSHeldOutDataset(**folder_args(pool, teacher_ckpt, repo_root, cache,
                                           num_skipped=4, num_samples=3))
    assert copy not in held_paths(held) and len(held) == 3
    # two pools sharing a file: the same path in both is one image
    shared = [dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=pool)),
              dict(type='UnlabeledImageDataset', ann_file=_list(tmp_path, [last]),
                   data_prefix=dict(img_path=''))]
    kw = folder_args(pool, teacher_ckpt, repo_root, tmp_path / 'c3')
    kw['dataset'] = dict(type='ConcatDataset', datasets=shared)
    ADSDataset(**dict(kw, num_samples=4))
    both = ADSHeldOutDataset(**dict(kw, num_skipped=4, num_samples=3))
    assert last not in held_paths(both) and copy not in held_paths(both)


def _list(tmp_path, paths):
    path = tmp_path / 'list.txt'
    path.write_text(''.join(p + '\n' for p in paths))
    return str(path)
