"""SeededInfiniteSampler: MMEngine's InfiniteSampler indices, each draw tagged with its
own augmentation seed, so that ADSDataset augments the n-th draw the same whatever
was loaded before it (what makes --resume exact when onedl-mmengine fast-forwards the
sampler instead of replaying the skipped batches) and leaves the global RNGs alone."""
import itertools
import pickle
import random

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import InfiniteSampler
from mmengine.registry import init_default_scope

from mmseg_dfss.datasets import ADSDataset, SeededInfiniteSampler
from mmseg_dfss.datasets.seeded_infinite_sampler import SeededIndex

AUGMENT = [dict(type='LoadImageFromFile'),
           dict(type='RandomResize', scale=(48, 48), ratio_range=(0.5, 2.0), keep_ratio=True),
           dict(type='RandomCrop', crop_size=(24, 24)), dict(type='RandomFlip', prob=0.5),
           dict(type='PackSegInputs')]


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def take(sampler, n):
    return [(int(i), i.seed) for i in itertools.islice(iter(sampler), n)]


def test_same_indices_as_mmengine_infinite_sampler():
    data = list(range(7))
    ours = take(SeededInfiniteSampler(data, seed=3), 30)
    assert [i for i, _ in ours] == list(itertools.islice(iter(InfiniteSampler(data, seed=3)),
                                                         30))
    assert len({s for _, s in ours}) == 30  # every draw its own seed


def test_skip_continues_the_stream_with_its_seeds():
    data = list(range(7))
    whole = take(SeededInfiniteSampler(data, seed=3), 30)
    resumed = SeededInfiniteSampler(data, seed=3)
    take(resumed, 5)  # skip is absolute, whatever was drawn before
    resumed.skip(12)
    assert take(resumed, 18) == whole[12:]


def test_a_seeded_index_reaches_a_worker_with_its_seed():
    index = pickle.loads(pickle.dumps(SeededIndex(4, 123)))
    assert (type(index), int(index), index.seed) == (SeededIndex, 4, 123)


@pytest.fixture(scope='module')
def random_ads(tmp_path_factory):
    """An ADSDataset ('random' strategy: no teacher run) with a random augmentation."""
    root = tmp_path_factory.mktemp('pool')
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(root / f'{i}.png'), rng.integers(0, 256, (40, 40, 3), np.uint8))
    return ADSDataset(
        dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=str(root)),
                     pipeline=AUGMENT),
        teacher='configs/synthetic/deeplabv3_r18-tiny_synthetic.py', num_samples=6,
        strategy='random', cache_dir=None)


def test_a_draw_is_augmented_the_same_whatever_was_loaded_before(random_ads):
    draws = take(SeededInfiniteSampler(random_ads, seed=0), 12)
    first = [random_ads[SeededIndex(i, s)]['inputs'] for i, s in draws]
    np.random.seed(99)
    random.seed(99)
    state = np.random.get_state()[1].copy(), random.getstate()
    again = [random_ads[SeededIndex(i, s)]['inputs'] for i, s in draws[6:]]  # a resume
    for a, b in zip(first[6:], again):
        assert torch.equal(a, b)
    # the global generators are untouched by loading ...
    assert np.array_equal(np.random.get_state()[1], state[0]) and random.getstate() == state[1]
    # ... and the augmentation is random: the same image drawn twice differs
    same_image = [(k, m) for k, m in itertools.combinations(range(12), 2)
                  if draws[k][0] == draws[m][0]]
    assert same_image and any(not torch.equal(first[k], first[m]) for k, m in same_image)
