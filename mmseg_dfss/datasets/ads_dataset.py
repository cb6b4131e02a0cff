import copy
from collections import Counter

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.dataset.base_dataset import force_full_init
from mmengine.logging import print_log
from mmseg.registry import DATASETS

from ..core.pool_scorer import PoolScorer, check_num_samples, eq11_weights, select_lowest
from ..core.teacher import check_teacher_checkpoint


@DATASETS.register_module()
class ADSDataset:
    """Approximate Distribution Sampling (paper Sec. 3.3): keeps the ``num_samples``
    (eps) pool images the teacher finds closest to its training distribution.

    Every pool image is scored once (through a cache) with ``strategy``; the eps
    lowest scores are kept, ties broken by pool index. Each kept sample is then
    served through the pool's own pipeline, and its packed ``SegDataSample``
    carries ``ads_distance`` (its score) and ``ads_weight`` in the metainfo:
    Eq. 11 over the kept set for ``'ads'`` and ``'confidence'``, 1 for
    ``'random'`` (which has no distance), and ``ads_teacher``: the teacher that
    scored it (spec, checkpoint, config and weights sha256), which
    :class:`DataFreeDistiller` compares with its own teacher. ``teacher_record`` keeps
    the full record (resolved config included) after the scorer is dropped.

    Args:
        dataset: the pool (config dict or dataset), e.g. ``UnlabeledImageDataset``.
        teacher: MMSeg segmentor config dict, config path (``mmseg::`` allowed) or
            ``dict(cfg_path=..., **overrides)``; the distiller's ``teacher``.
        teacher_checkpoint: the teacher's weights, a path or any URL MMEngine's
            ``CheckpointLoader`` reads; the distiller's ``teacher_checkpoint``.
        num_samples: eps, how many images to keep.
        strategy: ``'ads'`` | ``'random'`` | ``'confidence'``.
        bn_layers: ``'backbone'`` | ``'all'`` | list of module-name regexes.
        score_pipeline: deterministic pipeline for scoring (default: load,
            resize short side 256, pack).
        score_batch_size / score_num_workers: scoring DataLoader settings.
        cache_dir: where scores are cached (None: no cache).
        seed: seed of the ``'random'`` strategy.
        max_unreadable: share of the pool that may be unreadable before scoring
            stops ("wrong data_root?"); default 0.05.
        score_io_retries: retries of a transient I/O error per image.
        lazy_init: score only when first needed (``full_init``).
        allow_random_teacher: allow ``teacher_checkpoint=None`` (random weights;
            tests and benchmarks only).
    """

    def __init__(self, dataset, teacher, teacher_checkpoint=None, num_samples=None,
                 strategy='ads', bn_layers='backbone', score_pipeline=None, score_batch_size=8,
                 score_num_workers=0, cache_dir='work_dirs/ads_cache', seed=0, lazy_init=False,
                 max_unreadable=0.05, score_io_retries=3, allow_random_teacher=False):
        if isinstance(dataset, dict):
            self.dataset = DATASETS.build(dataset)
        elif isinstance(dataset, BaseDataset):
            self.dataset = dataset
        else:
            raise TypeError(f'ADSDataset: dataset must be a config dict or a BaseDataset, got '
                            f'{type(dataset)}')
        if num_samples is None:
            raise ValueError('ADSDataset: num_samples (eps) must be given')
        check_num_samples(num_samples)
        if strategy != 'random':  # 'random' never runs the teacher
            check_teacher_checkpoint(teacher_checkpoint, allow_random_teacher, 'ADSDataset')
        self.num_samples = num_samples
        self.strategy = strategy
        self.scorer = PoolScorer(teacher, teacher_checkpoint, strategy=strategy,
                                 bn_layers=bn_layers, score_pipeline=score_pipeline,
                                 batch_size=score_batch_size, num_workers=score_num_workers,
                                 cache_dir=cache_dir, seed=seed, max_unreadable=max_unreadable,
                                 io_retries=score_io_retries,
                                 allow_random_teacher=allow_random_teacher)
        self.teacher_record = None  # what scored: set by full_init (None for 'random')
        self._metainfo = self.dataset.metainfo
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self):
        return copy.deepcopy(self._metainfo)

    def full_init(self):
        """Scores the pool and selects eps samples (once)."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        if self.num_samples > len(self.dataset):
            raise ValueError(f'num_samples (eps) = {self.num_samples} is larger than the '
                             f'{len(self.dataset)} images of the pool (nothing was scored)')
        result = self.scorer.score(self.dataset)
        self.result = result
        self.selected = select_lowest(result.scores, self.num_samples)
        self.distances = result.scores[self.selected]
        if self.strategy == 'random':
            self.weights = np.ones(len(self.selected))
        else:
            self.weights = eq11_weights(self.distances)
        self._log_summary()
        self.teacher_record = self.scorer.teacher_record
        self._teacher_identity = None if self.teacher_record is None else {
            k: v for k, v in self.teacher_record.items() if k != 'config'}
        self.scorer = None  # the teacher is not needed any more (and not sent to workers)
        self._fully_initialized = True

    def _log_summary(self):
        res = self.result
        msg = (f'ADS ({self.strategy}): kept {len(self.selected)} of {len(res.paths)} pool '
               f'images ({len(res.errors)} unreadable, {len(res.nonfinite)} non-finite); '
               f'kept scores {self.distances.min():.6g} .. {self.distances.max():.6g}')
        subs = self.subdomain_mix()
        if subs:
            msg += '; sub-domains kept: ' + ', '.join(f'{k}={v}' for k, v in sorted(subs.items()))
        print_log(msg, logger='current')

    def subdomain_mix(self):
        """``{subdomain: count}`` of the kept samples, when the pool tags them."""
        tags = [self.dataset.get_data_info(int(i)).get('subdomain') for i in self.selected]
        return dict(Counter(tags)) if tags and all(t is not None for t in tags) else {}

    @force_full_init
    def __len__(self):
        return len(self.selected)

    @force_full_init
    def get_data_info(self, idx):
        info = self.dataset.get_data_info(int(self.selected[idx]))
        info.update(ads_distance=float(self.distances[idx]), ads_weight=float(self.weights[idx]))
        return info

    @force_full_init
    def __getitem__(self, idx):
        pool_idx = int(self.selected[idx])
        for _ in range(self.dataset.max_refetch + 1):
            data = self.dataset.prepare_data(pool_idx)
            if data is not None:
                break
        else:
            raise RuntimeError(
                f'ADSDataset: the pool pipeline returned None for the selected image '
                f'{self.dataset.get_data_info(pool_idx).get("img_path")!r} '
                f'{self.dataset.max_refetch + 1} times')
        data['data_samples'].set_metainfo(
            dict(ads_distance=float(self.distances[idx]), ads_weight=float(self.weights[idx]),
                 pool_index=pool_idx))
        if self._teacher_identity is not None:
            data['data_samples'].set_metainfo(dict(ads_teacher=dict(self._teacher_identity)))
        return data
