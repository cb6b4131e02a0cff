"""An ``InfiniteSampler`` whose every draw carries its own augmentation seed, so that a
resumed run augments each image exactly as the uninterrupted run did, on any MMEngine.

A training image's random augmentation (``RandomResize``, ``RandomCrop``,
``RandomFlip`` ...) draws from the process-global numpy/``random`` state, i.e. it
depends on everything loaded before it. On ``--resume`` at iteration N, MMEngine 0.10.7
replays the N skipped batches through the pipeline (consuming that state as the
interrupted run did); onedl-mmengine 0.10.12 fast-forwards the sampler with
``InfiniteSampler.skip`` and loads nothing, so the first resumed batch is augmented
with a different state and the run drifts (with ``num_workers > 0`` on both lines: the
workers' state restarts). Here the n-th index of the sampler's stream (counted over all
ranks) is tagged with a seed derived from the sampler's seed and n; a dataset that
honours it (:class:`~mmseg_dfss.datasets.ADSDataset`) runs its pipeline under
:func:`augmentation_seed`, so an image's augmentation is a function of (seed, n)
only: the same after a replayed, a fast-forwarded or no resume, in any worker.
"""
import contextlib
import itertools
import random

import numpy as np
from mmengine.dataset import InfiniteSampler
from mmseg.registry import DATA_SAMPLERS
from torch.utils.data import Sampler


class SeededIndex(int):
    """A dataset index with the augmentation seed of its draw (``.seed``)."""

    def __new__(cls, index, seed):
        obj = super().__new__(cls, index)
        obj.seed = int(seed)
        return obj

    def __reduce__(self):  # to dataloader workers and back
        return SeededIndex, (int(self), self.seed)


def draw_seed(sampler_seed, draw):
    """The augmentation seed of the ``draw``-th index of the stream (all ranks)."""
    return int(np.random.SeedSequence([int(sampler_seed) % 2**32, draw]).generate_state(1)[0])


@contextlib.contextmanager
def augmentation_seed(index):
    """Inside: numpy's and ``random``'s global state seeded from ``index.seed`` (a
    :class:`SeededIndex`); afterwards both are what they were, so loading an image
    neither depends on nor changes what else the process drew. A plain int: no-op."""
    seed = getattr(index, 'seed', None)
    if seed is None:
        yield
        return
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@DATA_SAMPLERS.register_module()
class SeededInfiniteSampler(Sampler):
    """MMEngine's ``InfiniteSampler`` (same indices for the same seed, same rank split),
    yielding :class:`SeededIndex` es. ``skip(n)`` (what onedl-mmengine calls on resume)
    continues the stream at this rank's n-th index, seeds included.

    Args:
        dataset: the dataset to sample from.
        shuffle (bool): shuffle every pass over the dataset. Defaults to True.
        seed (int, optional): the shuffling and augmentation seed (the runner passes
            its ``randomness.seed``); None: a random seed shared by all ranks.
    """

    def __init__(self, dataset, shuffle=True, seed=None):
        self.dataset, self.shuffle = dataset, shuffle
        first = InfiniteSampler(dataset, shuffle=shuffle, seed=seed)
        self.seed, self.rank, self.world_size = first.seed, first.rank, first.world_size
        self._stream = self._seeded(iter(first), 0)

    def _seeded(self, indices, start):
        for position, index in enumerate(indices, start):
            yield SeededIndex(index, draw_seed(self.seed,
                                               position * self.world_size + self.rank))

    def __iter__(self):
        yield from self._stream

    def __len__(self):
        return len(self.dataset)

    def set_epoch(self, epoch):
        """Not used by iteration-based training (as in ``InfiniteSampler``)."""

    def skip(self, num_samples):
        """Continue at this rank's ``num_samples``-th index (absolute, from the start)."""
        if num_samples < 0:
            raise ValueError(f'num_samples must be >= 0, got {num_samples}')
        fresh = InfiniteSampler(self.dataset, shuffle=self.shuffle, seed=self.seed)
        self._stream = self._seeded(itertools.islice(iter(fresh), num_samples, None),
                                    num_samples)
