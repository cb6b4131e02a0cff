import copy
import hashlib
from collections import Counter

import numpy as np
from mmengine.dataset import BaseDataset, ConcatDataset
from mmengine.dataset.base_dataset import force_full_init
from mmengine.logging import print_log
from mmseg.registry import DATASETS

from ..core.pool_scorer import PoolScorer, ScoreResult
from ..core.selection import check_num_samples, eq11_weights, select_lowest
from ..core.teacher import check_teacher_checkpoint
from .ads_selection_record import record_selection, selection_key
from .seeded_infinite_sampler import augmentation_seed


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

    Several pools combine with MMEngine's ``ConcatDataset`` (paper Sec. 3.2: a
    larger pool is likelier to hold images close to the original data): each
    source is scored on its own, through the cache (so scores of a pool already
    scored alone, e.g. by ``tools/compare_pools.py``, are reused), and eps is
    cut over all sources together. ``source_counts()`` says how many kept
    images come from each source (``selected_sources``: the source of each kept
    sample); the summary log says it too.

    Args:
        dataset: the pool (config dict or dataset), e.g. ``UnlabeledImageDataset``,
            or a ``ConcatDataset`` of pools.
        teacher: MMSeg segmentor config dict, config path (``mmseg::`` allowed) or
            ``dict(cfg_path=..., **overrides)``. In a DFSS config leave it unset: the
            runner and the tools fill in the distiller's ``model.teacher``
            (:func:`~mmseg_dfss.core.shared_teacher.resolve_shared`).
        teacher_checkpoint: the teacher's weights, a path or any URL MMEngine's
            ``CheckpointLoader`` reads, or ``'metafile'`` (a zoo teacher's Weights in
            the installed metafile); unset: ``model.teacher_checkpoint``.
        num_samples: eps, how many images to keep.
        strategy: ``'ads'`` | ``'random'`` | ``'confidence'``.
        bn_layers: ``'backbone'`` | ``'all'`` | list of module-name regexes.
        score_pipeline: deterministic pipeline for scoring; None: the teacher
            config's test pipeline, else the image at its native size (logged).
        score_batch_size / score_num_workers: scoring DataLoader settings.
        cache_dir: where scores are cached (None: no cache).
        seed: seed of the ``'random'`` strategy.
        max_unreadable: share of the pool that may be unreadable before scoring
            stops ("wrong data_root?"); default 0.05.
        score_io_retries: retries of a transient I/O error per image.
        lazy_init: score only when first needed (``full_init``).
        allow_random_teacher: allow ``teacher_checkpoint=None`` (random weights;
            tests and benchmarks only).
        source_names: names of the ``ConcatDataset``'s pools in logs and
            ``source_counts()`` (default ``'<i>:<dataset type>'``).
    """

    def __init__(self, dataset, teacher=None, teacher_checkpoint=None, num_samples=None,
                 strategy='ads', bn_layers='backbone', score_pipeline=None, score_batch_size=8,
                 score_num_workers=0, cache_dir='work_dirs/ads_cache', seed=0, lazy_init=False,
                 max_unreadable=0.05, score_io_retries=3, allow_random_teacher=False,
                 source_names=None):
        owner = type(self).__name__
        if isinstance(dataset, dict) and not dataset:
            raise ValueError(f'{owner}: dataset (the pool) is not set: give a dataset of '
                             'unlabeled images (in a DFSS config: '
                             'train_dataloader.dataset.dataset)')
        if not teacher:
            raise ValueError(f'{owner}: teacher is not set: give teacher= (in a DFSS config set '
                             'model.teacher; DFSSRunner and the tools copy it here)')
        if isinstance(dataset, dict):
            self.dataset = DATASETS.build(dataset)
        elif isinstance(dataset, (BaseDataset, ConcatDataset)):
            self.dataset = dataset
        else:
            raise TypeError(f'ADSDataset: dataset must be a config dict, a BaseDataset or a '
                            f'ConcatDataset, got {type(dataset)}')
        if not isinstance(self.dataset, (BaseDataset, ConcatDataset)):
            raise TypeError(f'ADSDataset: dataset must build a BaseDataset or a ConcatDataset, '
                            f'got {type(self.dataset).__name__}')
        self.source_names = self._source_names(source_names)
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

    @property
    def sources(self):
        """The pools the selection draws from: the ConcatDataset's, or the one pool."""
        if isinstance(self.dataset, ConcatDataset):
            return list(self.dataset.datasets)
        return [self.dataset]

    def _source_names(self, names):
        n = len(self.sources)
        if names is None:
            return [f'{i}:{type(d).__name__}' for i, d in enumerate(self.sources)]
        names = [str(x) for x in names]
        if len(names) != n or len(set(names)) != n:
            raise ValueError(f'ADSDataset: source_names must be {n} distinct names, one per '
                             f'pool of the dataset, got {names!r}')
        return names

    def _score(self):
        """Scores the pool; a ConcatDataset source by source (each through the cache),
        except for ``'random'``, whose keys are drawn once over the whole pool."""
        sources = self.sources
        if len(sources) == 1 or self.strategy == 'random':
            return self.scorer.score(self.dataset)
        parts = [self.scorer.score(d) for d in sources]
        errors, offset = {}, 0
        for part in parts:
            errors.update({offset + int(i): e for i, e in part.errors.items()})
            offset += len(part.paths)
        fingerprint = hashlib.sha256(
            '|'.join(p.fingerprint for p in parts).encode()).hexdigest()
        return ScoreResult(strategy=self.strategy,
                           scores=np.concatenate([p.scores for p in parts]),
                           paths=[path for p in parts for path in p.paths], errors=errors,
                           layers=parts[0].layers, fingerprint=fingerprint)

    def full_init(self):
        """Scores the pool and selects eps samples (once)."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        if self.num_samples > len(self.dataset):
            raise ValueError(f'num_samples (eps) = {self.num_samples} is larger than the '
                             f'{len(self.dataset)} images of the pool (nothing was scored)')
        result = self._score()
        self.result = result
        self.selected = select_lowest(result.scores, self.num_samples)
        bounds = np.cumsum([len(d) for d in self.sources])
        # the source (index into ``sources``) of every kept sample
        self.selected_sources = np.searchsorted(bounds, self.selected, side='right')
        self.distances = result.scores[self.selected]
        if self.strategy == 'random':
            self.weights = np.ones(len(self.selected))
        else:
            self.weights = eq11_weights(self.distances)
        self._log_summary()
        self.teacher_record = self.scorer.teacher_record
        # by image identity, for ADSHeldOutDataset (which must never hold these images)
        record_selection(self.scorer.cache_dir,
                         selection_key(self.strategy, self.num_samples, self.teacher_record,
                                       self.scorer.seed),
                         [result.paths[i] for i in self.selected])
        self._teacher_identity = None if self.teacher_record is None else {
            k: v for k, v in self.teacher_record.items() if k != 'config'}
        self.scorer = None  # the teacher is not needed any more (and not sent to workers)
        self._fully_initialized = True

    def _log_summary(self):
        res = self.result
        msg = (f'ADS ({self.strategy}): kept {len(self.selected)} of {len(res.paths)} pool '
               f'images ({len(res.errors)} unreadable, {len(res.nonfinite)} non-finite); '
               f'kept scores {self.distances.min():.6g} .. {self.distances.max():.6g}')
        if len(self.sources) > 1:
            parts = []
            for k, name in enumerate(self.source_names):
                kept = self.distances[self.selected_sources == k]
                median = f', median score {np.median(kept):.6g}' if kept.size else ''
                parts.append(f'{name}={kept.size} of {len(self.sources[k])}{median}')
            msg += '; sources kept: ' + ', '.join(parts)
        subs = self.subdomain_mix()
        if subs:
            msg += '; sub-domains kept: ' + ', '.join(f'{k}={v}' for k, v in sorted(subs.items()))
        print_log(msg, logger='current')

    @force_full_init
    def source_counts(self):
        """``{source name: number of kept samples}`` over every source (0 included),
        in source order."""
        counts = np.bincount(self.selected_sources, minlength=len(self.sources))
        return {name: int(c) for name, c in zip(self.source_names, counts)}

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
        source, local_idx = self.dataset, pool_idx
        if isinstance(self.dataset, ConcatDataset):  # served by its own pool's pipeline
            k, local_idx = self.dataset._get_ori_dataset_idx(pool_idx)
            source = self.dataset.datasets[k]
        with augmentation_seed(idx):  # a SeededInfiniteSampler's draw: resumes exactly
            for _ in range(source.max_refetch + 1):
                data = source.prepare_data(local_idx)
                if data is not None:
                    break
        if data is None:
            raise RuntimeError(
                f'ADSDataset: the pool pipeline returned None for the selected image '
                f'{source.get_data_info(local_idx).get("img_path")!r} '
                f'{source.max_refetch + 1} times')
        data['data_samples'].set_metainfo(
            dict(ads_distance=float(self.distances[idx]), ads_weight=float(self.weights[idx]),
                 pool_index=pool_idx))
        if self._teacher_identity is not None:
            data['data_samples'].set_metainfo(dict(ads_teacher=dict(self._teacher_identity)))
        return data
