"""ADS ranks after the eps cut: validation images the student never trains on."""
import numpy as np
from mmengine.logging import print_log
from mmseg.registry import DATASETS

from ..core.selection import eq11_weights
from .ads_dataset import ADSDataset


@DATASETS.register_module()
class ADSHeldOutDataset(ADSDataset):
    """The pool images ADS ranks just after the eps cut: the ``num_samples`` images of
    ranks ``num_skipped .. num_skipped + num_samples - 1`` (0 = closest to the
    teacher's training distribution, Eq. 9).

    With ``num_skipped`` = the training run's eps and the training run's pool, teacher
    and score settings, these are the images closest to the original domain that the
    student never trains on: a validation set for :class:`TeacherLabeledDataset`. The
    scores come from the same ADS cache, so nothing is scored twice.

    Args:
        num_skipped: how many of the best-ranked images are left out (the training
            set's eps).
        num_samples: how many images follow them.
        **kwargs: as :class:`ADSDataset`.
    """

    def __init__(self, *args, num_skipped=None, **kwargs):
        if isinstance(num_skipped, bool) or not isinstance(num_skipped, (int, np.integer)) \
                or num_skipped < 0:
            raise ValueError('ADSHeldOutDataset: num_skipped (the training eps) must be an '
                             f'integer >= 0, got {num_skipped!r}')
        self.num_skipped = int(num_skipped)
        super().__init__(*args, **kwargs)

    def full_init(self):
        if self._fully_initialized:
            return
        self.dataset.full_init()
        skip, n = self.num_skipped, self.num_samples
        if skip + n > len(self.dataset):
            raise ValueError(
                f'ADSHeldOutDataset: num_skipped ({skip}, the training eps) + num_samples '
                f'({n}) is larger than the {len(self.dataset)} images of the pool; no '
                'held-out images are left: use a smaller eps or num_samples, or name a '
                'folder of validation images')
        self.num_samples = skip + n
        try:
            super().full_init()  # scores (through the cache) and keeps the skip + n best
        finally:
            self.num_samples = n
        keep = slice(skip, skip + n)
        self.selected = self.selected[keep]
        self.selected_sources = self.selected_sources[keep]
        self.distances = self.distances[keep]
        self.weights = (np.ones(len(self.selected)) if self.strategy == 'random' else
                        eq11_weights(self.distances))
        print_log(f'ADSHeldOutDataset: held out the {n} pool images ranked {skip} .. '
                  f'{skip + n - 1} by {self.strategy} (after the {skip} a student trained '
                  f'with eps={skip} learns from); scores {self.distances.min():.6g} .. '
                  f'{self.distances.max():.6g}', logger='current')
