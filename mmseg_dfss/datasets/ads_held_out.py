"""ADS ranks after the eps cut: validation images the student never trains on."""
import os.path as osp

import numpy as np
from mmengine.logging import print_log
from mmseg.registry import DATASETS

from ..core.selection import eq11_weights, select_lowest
from .ads_dataset import ADSDataset
from .ads_selection_record import (file_digest, identities, record_path, selection_key,
                                   shared_record)


@DATASETS.register_module()
class ADSHeldOutDataset(ADSDataset):
    """The ``num_samples`` pool images ADS ranks first after the training selection
    (0 = closest to the teacher's training distribution, Eq. 9), none of them an
    image the student trained on.

    With ``num_skipped`` = the training run's eps and the training run's pool, teacher
    and score settings, these are the images closest to the original domain that the
    student never trains on: a validation set for :class:`TeacherLabeledDataset`. The
    scores come from the same ADS cache, so nothing is scored twice.

    Disjointness is checked by image identity, not by rank: an image is left out when
    its absolute path or the sha256 of its bytes is that of an image of the training
    selection, both as recomputed from today's pool and as the training run recorded
    it in the ADS cache (``cache_dir/selections/``, see ``ads_selection_record``).
    So files added or removed since training (ranks moved), pools that share files
    and copies of one file at two paths (a tie at the eps cut) never bring a trained
    image in. If the recorded selection is not today's, the pool changed since
    training: a warning names how many and which images, and the held-out set leaves
    out both selections.

    In a DFSS config every unset setting (pool, teacher, scoring, cache, seed and
    ``num_skipped``) is the training ``ADSDataset``'s
    (:func:`~mmseg_dfss.core.shared_teacher.resolve_shared`).

    Args:
        num_skipped: the training set's eps.
        num_samples: how many held-out images.
        **kwargs: as :class:`ADSDataset`.
    """

    def __init__(self, *args, num_skipped=None, **kwargs):
        if num_skipped is None:
            raise ValueError('ADSHeldOutDataset: num_skipped (the training eps) is not set: '
                             'give it, or in a DFSS config leave it unset next to a training '
                             'ADSDataset (DFSSRunner and the tools copy its num_samples)')
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
        self.result = result = self._score()
        self.teacher_record = self.scorer.teacher_record
        trained = self._trained_identities(result)
        self.selected = self._pick(result, trained)
        bounds = np.cumsum([len(d) for d in self.sources])
        self.selected_sources = np.searchsorted(bounds, self.selected, side='right')
        self.distances = result.scores[self.selected]
        self.weights = (np.ones(len(self.selected)) if self.strategy == 'random' else
                        eq11_weights(self.distances))
        self._teacher_identity = None if self.teacher_record is None else {
            k: v for k, v in self.teacher_record.items() if k != 'config'}
        self.scorer = None
        self._fully_initialized = True
        print_log(f'ADSHeldOutDataset: held out {n} pool images ranked after the {skip} a '
                  f'student trained with eps={skip} learns from ({self.strategy}; none of '
                  'them is a training image by path or content); scores '
                  f'{self.distances.min():.6g} .. {self.distances.max():.6g}',
                  logger='current')

    def _trained_identities(self, result):
        """Paths and digests of the training selection: today's and the recorded one."""
        skip = self.num_skipped
        today = ([result.paths[i] for i in select_lowest(result.scores, skip)]
                 if skip else [])
        cache_dir = self.scorer.cache_dir
        key = selection_key(self.strategy, skip, self.teacher_record, self.scorer.seed)
        recorded = shared_record(cache_dir, key)
        now = identities(today, recorded)
        if skip and not recorded:
            where = record_path(cache_dir, key) if cache_dir else 'cache_dir=None'
            print_log(f'ADSHeldOutDataset: no training selection recorded ({where}); the '
                      f'held-out set leaves out the {skip} images ADS selects from today\'s '
                      'pool', logger='current', level=30)
        stale = [r for r in recorded if r['path'] not in now
                 or now[r['path']]['stamp'] != r['stamp']]
        if stale:
            print_log(f'ADSHeldOutDataset: the pool changed since training: {len(stale)} '
                      f'recorded training images are not in today\'s selection of {skip} '
                      f'(e.g. {stale[0]["path"]!r}; files added, removed or rewritten); the '
                      'held-out set leaves out both selections', logger='current', level=30)
        paths = set(now) | {r['path'] for r in recorded}
        digests = {r['digest'] for r in list(now.values()) + recorded if r['digest']}
        return paths, digests

    def _pick(self, result, trained):
        """The first ``num_samples`` ranked images that are no training image."""
        paths, digests = trained
        scores = np.asarray(result.scores, dtype=np.float64)
        finite = np.flatnonzero(np.isfinite(scores))
        order = finite[np.lexsort((finite, scores[finite]))]
        picked, dropped = [], 0
        for i in order:
            path = osp.abspath(result.paths[i])
            if path in paths or file_digest(path) in digests:
                dropped += 1
                continue
            picked.append(int(i))
            if len(picked) == self.num_samples:
                break
        if len(picked) < self.num_samples:
            raise ValueError(
                f'ADSHeldOutDataset: only {len(picked)} of the {len(scores)} pool images '
                f'are not training images ({dropped} are, by path or content); '
                f'num_samples={self.num_samples} cannot be held out: use a smaller '
                'num_samples or name a folder of validation images')
        if dropped > self.num_skipped:
            print_log(f'ADSHeldOutDataset: {dropped - self.num_skipped} images beyond the '
                      f'{self.num_skipped} of the training eps were left out as training '
                      'images (shared files, copies, or a changed pool)', logger='current')
        return np.asarray(picked, dtype=np.int64)
