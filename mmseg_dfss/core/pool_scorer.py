"""Scores every image of an open-world pool for a sampling strategy (ADS, Sec. 3.3).

Strategies (lower score = kept first, see :mod:`mmseg_dfss.core.selection`):

- ``'ads'``: the BN statistics distance d of Eq. 9 (:class:`BNStatsDistance`).
- ``'confidence'``: DFND's rule carried to pixels: mean over pixels of
  -log max softmax of the teacher's logits (at the input resolution).
- ``'random'``: a uniform key drawn with ``seed`` per pool index (the teacher is
  not run and no image is decoded; a file whose header cannot be read is
  skipped as unreadable).

:class:`PoolScorer` ties the parts together, each in its own module: images are
read by :class:`~mmseg_dfss.core.score_view.ScoreView` under a deterministic score
pipeline (failures told apart: an unreadable file is skipped, counted and cached, a
pipeline error stops, a transient ``OSError`` is retried and never cached), batched
only with images of one input shape by :mod:`~mmseg_dfss.core.batch_plan` (shapes
known from image sizes before loading, so no padding enters a score and batches are
full), normalised by the teacher's own ``data_preprocessor``, and kept in the
:class:`~mmseg_dfss.core.score_cache.ScoreCache` under a setup fingerprint. Under
torch.distributed, :mod:`~mmseg_dfss.core.rank_coordination` keeps the ranks in
step: one setup, one view of the cache, each rank a share of whole batches, every
rank ending with the same complete scores. More than ``max_unreadable`` of the
pool unreadable stops the scoring ("wrong data_root?").
"""
import copy
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader

from .batch_plan import ShapeBatcher, ShapePredictor, plan_batches, read_header_size
from .bn_stats import BNStatsDistance
from .fingerprint import file_stamp, jsonable, setup_fingerprint
from .pool_errors import (ScoreIOError, ScorePipelineError, SetupMismatchError,
                          TooManyUnreadableError)
from .preprocess import non_padding_preprocessor
from .rank_coordination import check_same_setup, gather_parts, rank_error, shared_cache_view
from .score_cache import ScoreCache, SizeCache
from .score_view import ScoreView, collate_records
from .selection import check_num_samples, eq11_weights, select_lowest
from .teacher import (build_frozen_segmentor, check_teacher_checkpoint, load_model_config,
                      resolve_teacher_checkpoint, teacher_record)
from .teacher_defaults import default_score_pipeline

STRATEGIES = ('ads', 'random', 'confidence')
# part of every cache fingerprint: bump when the way a score is computed changes
SCORER_VERSION = 3  # 3: transient I/O errors and pipeline errors are never cached
# the original protocol's scoring view (short side 256); score_pipeline=None is the teacher's
DEFAULT_SCORE_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortestEdge', scale=256, max_size=1 << 30),
    dict(type='PackSegInputs'),
]


@dataclass
class ScoreResult:
    """Scores of a whole pool: ``scores[i]`` is NaN for an unreadable image.
    ``batches``: ``(input shape, size)`` of each batch this process ran."""
    strategy: str
    scores: np.ndarray
    paths: list
    errors: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)
    fingerprint: str = ''
    batches: list = field(default_factory=list)

    @property
    def nonfinite(self):
        """Readable images whose score is NaN or inf (never selected)."""
        return [int(i) for i in np.flatnonzero(~np.isfinite(self.scores))
                if int(i) not in self.errors]


def _image_path(pool, index):
    return pool.get_data_info(index).get('img_path', index)


class PoolScorer:
    """Scores a pool dataset with one strategy, through the cache.

    Args:
        teacher: segmentor config dict or file path (``mmseg::`` allowed).
        teacher_checkpoint: checkpoint path or URL (any ``CheckpointLoader`` scheme), or
            ``'metafile'``: the Weights the installed metafile lists for a zoo teacher.
        strategy: ``'ads'`` | ``'random'`` | ``'confidence'``.
        bn_layers: ``'backbone'`` | ``'all'`` | list of regexes (``'ads'`` only).
        score_pipeline: deterministic pipeline ending in ``PackSegInputs``; None: the
            teacher config's test pipeline without ``LoadAnnotations``, else the image at
            its native size (:func:`.teacher_defaults.default_score_pipeline`).
        batch_size: images per forward (images of one input shape only).
        num_workers: DataLoader workers loading the images.
        cache_dir: folder of score caches (and image sizes); None disables it.
            Under several nodes it must be on a filesystem they all share.
        seed: seed of the ``'random'`` strategy.
        device: where the teacher runs (default: CUDA if available).
        progress: show a progress bar (rank 0).
        max_unreadable: the share of the pool that may be unreadable (0.05 = 5%);
            beyond it scoring stops ("wrong data_root?"). 1.0 never stops.
        io_retries: retries of a transient ``OSError`` (EIO, EMFILE, ESTALE, ...)
            on one image before scoring stops (nothing is cached for it).
        allow_random_teacher: allow ``teacher_checkpoint=None`` (random weights; tests
            and benchmarks only). ``teacher_record`` says what scored after ``score()``.
    """

    def __init__(self, teacher, teacher_checkpoint=None, strategy='ads', bn_layers='backbone',
                 score_pipeline=None, batch_size=8, num_workers=0, cache_dir=None, seed=0,
                 device=None, progress=True, max_unreadable=0.05, io_retries=3,
                 allow_random_teacher=False):
        if strategy not in STRATEGIES:
            raise ValueError(f'strategy must be one of {STRATEGIES}, got {strategy!r}')
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'score_batch_size must be a positive integer, got {batch_size!r}')
        if isinstance(max_unreadable, bool) or not isinstance(max_unreadable, (int, float)) \
                or not 0 <= max_unreadable <= 1:
            raise ValueError(f'max_unreadable must be a share of the pool in [0, 1], got '
                             f'{max_unreadable!r}')
        if not isinstance(io_retries, int) or io_retries < 0:
            raise ValueError(f'io_retries must be an integer >= 0, got {io_retries!r}')
        if strategy != 'random':  # 'random' never runs the teacher
            check_teacher_checkpoint(teacher_checkpoint, allow_random_teacher, 'PoolScorer')
        self.teacher_cfg = teacher
        self.teacher_checkpoint = teacher_checkpoint
        self.allow_random_teacher = allow_random_teacher
        self.teacher_record = None
        self._model = None  # built once, on the first score(): several pools share it
        self.strategy = strategy
        self.bn_layers = bn_layers
        self.score_pipeline = (copy.deepcopy(list(score_pipeline)) if score_pipeline is not None
                               else default_score_pipeline(teacher, 'PoolScorer'))
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.seed = seed
        if device is None:
            device = f'cuda:{torch.cuda.current_device()}' if torch.cuda.is_available() else 'cpu'
        self.device = device
        self.progress = progress
        self.max_unreadable = float(max_unreadable)
        self.io_retries = io_retries
        self.retry_delay = 0.2

    # ---------------------------------------------------------------- teacher
    def _build(self):
        """The frozen teacher on ``device`` (its record kept in ``teacher_record``),
        built on the first call only: a scorer scores several pools with one teacher."""
        if self._model is not None:
            return self._model
        checkpoint = resolve_teacher_checkpoint(self.teacher_cfg, self.teacher_checkpoint)
        model = build_frozen_segmentor(self.teacher_cfg, checkpoint, 'teacher',
                                       allow_random_teacher=self.allow_random_teacher)
        self.teacher_record = teacher_record(self.teacher_cfg, checkpoint, model)
        model = model.to(self.device)
        if torch.device(self.device).type == 'cuda' and hasattr(model.data_preprocessor,
                                                                '_non_blocking'):
            model.data_preprocessor._non_blocking = True  # batches come from pinned memory
        self._model = model
        return model

    def _score_fn(self, model):
        """``(score(inputs, data_samples) -> per-image scores, BN hooks or None)``."""
        if self.strategy == 'ads':
            bn = BNStatsDistance(model, self.bn_layers)
            return (lambda inputs, samples: bn(inputs)), bn

        def confidence(inputs, samples):
            with torch.no_grad():
                logits = model.encode_decode(inputs, [s.metainfo for s in samples])
            nll = -torch.log_softmax(logits.double(), dim=1).max(dim=1).values
            return nll.flatten(1).mean(dim=1)

        return confidence, None

    # ------------------------------------------------------------ fingerprint
    def _parts(self, model, paths, layers, sizes):
        """What a score depends on, hashed into the cache fingerprint."""
        parts = dict(version=SCORER_VERSION, strategy=self.strategy,
                     score_pipeline=jsonable(self.score_pipeline),
                     pool=hashlib.sha256(json.dumps([paths, sizes]).encode()).hexdigest())
        if self.strategy == 'random':
            parts['seed'] = self.seed
        else:
            parts['teacher_config'] = jsonable(load_model_config(self.teacher_cfg).to_dict())
            parts['teacher_weights'] = self.teacher_record['weights_digest']  # of model
        if self.strategy == 'ads':
            parts['layers'] = layers
        return parts

    def fingerprint(self, model, paths, layers, sizes):
        return setup_fingerprint(self._parts(model, paths, layers, sizes))

    # ------------------------------------------------------------------ score
    def score(self, pool):
        """Scores every image of ``pool`` (a dataset with ``get_data_info``).
        An info's ``height``/``width`` (COCO) give the image size without I/O."""
        paths, hints = self._pool_files(pool)
        stamps = [file_stamp(p) for p in paths]
        rank, world = get_dist_info()
        model, layers, score_fn, hooks = None, [], None, None
        if self.strategy != 'random':
            model = self._build()
            score_fn, hooks = self._score_fn(model)
            if hooks is not None:
                layers = [name for name, _ in hooks.layers]
        try:
            parts = self._parts(model, paths, layers, stamps)
            fp = setup_fingerprint(parts)
            if world > 1:
                check_same_setup(parts, paths, stamps)
            cache = size_cache = None
            if self.cache_dir:
                cache = ScoreCache(self.cache_dir, fp, paths, self.strategy, rank=rank,
                                   describe=dict(strategy=self.strategy, num_layers=len(layers),
                                                 teacher_checkpoint=self.teacher_checkpoint))
                size_cache = SizeCache(self.cache_dir)
            done, known = shared_cache_view(cache, size_cache, paths, stamps, rank, world)
            new, batches = self._score_missing(pool, done, known, (paths, stamps, hints),
                                               (model, score_fn), cache)
        finally:
            if hooks is not None:
                hooks.remove()
        done.update(new)
        return self._result(done, paths, layers, fp, batches)

    @staticmethod
    def _pool_files(pool):
        """The pool's image paths, and their ``(h, w)`` where the info gives them."""
        paths, hints = [], []
        for i in range(len(pool)):
            info = pool.get_data_info(i)
            paths.append(str(info.get('img_path', i)))
            h, w = info.get('height'), info.get('width')
            hints.append((int(h), int(w)) if h and w else None)
        return paths, hints

    def _score_missing(self, pool, done, known, files, teacher, cache):
        """Scores this rank's share of the images not in ``done``; returns every
        rank's new ``{index: (score, error)}`` and this rank's batches. Closes the
        cache. An error on any rank stops every rank (none waits forever)."""
        paths, stamps, hints = files
        rank, world = get_dist_info()
        n = len(paths)
        todo = [i for i in range(n) if i not in done]
        sizes = self._sizes(todo, paths, stamps, hints, known, rank, world)
        new, batches, exc = {}, [], None
        try:
            if self.strategy == 'random':
                new = self._random(todo, paths, sizes, cache, rank, world)
            else:
                plan = self._plan(todo, sizes, rank, world)
                bad_before = sum(1 for _, e in done.values() if e is not None)
                new, batches = self._run(pool, plan, *teacher, cache, rank, n, bad_before)
        except Exception as e:  # every rank must learn of it, or the others hang
            exc = e
        finally:
            if cache is not None:
                cache.close()
        if world > 1:
            new, err = gather_parts(new, exc)
            if exc is None and err is not None:  # every rank stops with the first one's
                raise rank_error(*err)
        if exc is not None:
            raise exc
        return new, batches

    def _plan(self, todo, sizes, rank, world):
        """This rank's batches: ``[(predicted input shape or None, [indices])]``."""
        predict = ShapePredictor(self.score_pipeline)
        if predict.note and rank == 0 and todo:
            print_log(f'ADS: score pipeline input shapes are not predicted from '
                      f'image sizes ({predict.note}); images are loaded to learn '
                      'their shape and batches may not be full', logger='current',
                      level=30)
        shapes = {i: predict(sizes.get(i)) for i in todo}
        return plan_batches(todo, shapes, self.batch_size, world)[rank]

    def _result(self, done, paths, layers, fp, batches):
        """The :class:`ScoreResult` of a fully scored pool, checked and reported."""
        n = len(paths)
        missing = [i for i in range(n) if i not in done]
        if missing:  # a bug, never a silent NaN
            raise RuntimeError(f'ADS: {len(missing)} pool images were never scored, e.g. '
                               f'{[paths[i] for i in missing[:3]]}')
        scores = np.full(n, np.nan)
        errors = {}
        for i, (s, err) in done.items():
            if err is not None:
                errors[i] = err
            else:
                scores[i] = s
        self._check_unreadable(len(errors), n, [paths[i] for i in sorted(errors)[:5]])
        result = ScoreResult(self.strategy, scores, paths, errors, layers, fp, batches)
        self._report(result)
        return result

    def _sizes(self, todo, paths, stamps, hints, known, rank, world):
        """``{index: (h, w) or error text}`` of the images to score: COCO hints
        first, then cached header sizes, then headers read now (shared out over
        the ranks and threads; rank 0 keeps them beside the cache)."""
        need_header = self.strategy == 'random'
        sizes = {i: hints[i] for i in todo if hints[i] is not None and not need_header}
        for i in todo:
            if i not in sizes and i in known:
                sizes[i] = known[i]
        if self.strategy != 'random' and ShapePredictor(self.score_pipeline).transforms is None:
            return sizes  # shapes are not predictable: no header is worth reading
        mine = [i for i in todo if i not in sizes][rank::world]
        read, exc = {}, None
        try:
            with ThreadPoolExecutor(max_workers=8) as ex:
                read = dict(zip(mine, ex.map(self._header, [paths[i] for i in mine])))
        except Exception as e:  # raised below, after the other ranks have heard of it
            exc = e
        if world > 1:
            read, err = gather_parts(read, exc)
            if exc is None and err is not None:
                raise ScoreIOError(f'(on rank {err[0]}) {err[2]}')
        if exc is not None:
            raise exc
        sizes.update(read)
        if rank == 0 and self.cache_dir and read:
            SizeCache(self.cache_dir).append([(paths[i], stamps[i], hw)
                                              for i, hw in sorted(read.items())])
        return sizes

    def _header(self, path):
        """(h, w) from the file header, or the error text of an unreadable one;
        transient OSErrors are retried, then raised (never kept)."""
        return read_header_size(path, self.io_retries, self.retry_delay)

    def _random(self, todo, paths, sizes, cache, rank, world):
        """'random': a seeded key per pool index; no image is decoded, a file
        without a readable header is unreadable."""
        keys = np.random.default_rng(self.seed).random(len(paths))
        new = {}
        for i in todo:
            hw = sizes[i]
            new[i] = ((float(keys[i]), None) if isinstance(hw, tuple) else
                      (None, f'unreadable image header: {hw}'))
        if cache is not None:
            cache.write([(i, *new[i]) for i in todo[rank::world]])
        return new

    def _run(self, pool, plan, model, score_fn, cache, rank, n, bad_before):
        """Loads and scores the images of ``plan`` (this rank's batches), appending
        each batch's scores to the cache as soon as it is scored. Returns
        ``({index: (score, error)}, [(input shape, size) of each batch run])``."""
        out = {}
        order = [i for _, idx in plan for i in idx]
        if not order:
            return out, []
        bar = ProgressBar(len(order)) if self.progress and rank == 0 else None

        def record(recs):
            for i, s, e in recs:
                out[i] = (s, e)
            if cache is not None:
                cache.write(recs)
            if bar is not None:
                for _ in recs:
                    bar.update()

        batcher = ShapeBatcher(plan, self.batch_size,
                               lambda items: record(self._score_batch(model, score_fn, items)))
        bad, limit = bad_before, self.max_unreadable * n
        for batch in self._loader(pool, order):
            for item in batch:
                i = item['index']
                error = self._failure(item, pool)
                if error is None:
                    batcher.add(item)
                else:
                    record([(i, None, error)])
                    bad += 1
                    self._check_unreadable(bad, n, [_image_path(pool, i)], stopped=True,
                                           limit=limit)
                batcher.passed(i)
        batcher.flush_all()
        if bar is not None:
            print()
        return out, batcher.batches

    def _loader(self, pool, order):
        """Batches of the pool images ``order`` under the score pipeline (each record
        loaded, or the reason it could not be)."""
        view = ScoreView(pool, order, self.score_pipeline, self.io_retries, self.retry_delay)
        return DataLoader(view, batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, collate_fn=collate_records,
                          pin_memory=torch.device(self.device).type == 'cuda')

    @staticmethod
    def _score_batch(model, score_fn, items):
        """``[(index, score, None)]`` of one batch of loaded images of one shape."""
        data = non_padding_preprocessor(model.data_preprocessor)(
            dict(inputs=[it['inputs'] for it in items],
                 data_samples=[it['data_samples'] for it in items]), False)
        s = score_fn(data['inputs'], data['data_samples']).cpu().numpy()
        return [(it['index'], float(v), None) for it, v in zip(items, s)]

    def _failure(self, item, pool):
        """The error text of an unreadable image (logged; it is skipped), None for a
        loaded one; raises for a pipeline error or a lasting I/O error."""
        kind = item.get('kind')
        if kind == 'pipeline':
            raise ScorePipelineError(
                f'ADS: {item["error"]}. This is a score_pipeline/config error, not a '
                'bad image: scoring stopped (nothing was cached for it).')
        if kind == 'transient':
            raise ScoreIOError(
                f'ADS: transient I/O error after {self.io_retries} retries: '
                f'{item["error"]}; nothing was cached for it, run again to resume')
        if kind == 'unreadable':
            print_log(f'ADS: skipping unreadable image {_image_path(pool, item["index"])!r}: '
                      f'{item["error"]}', logger='current', level=30)
            return item['error']
        return None

    def _check_unreadable(self, bad, n, examples, stopped=False, limit=None):
        """Stops the scoring once more than ``max_unreadable`` of the pool is unreadable."""
        limit = self.max_unreadable * n if limit is None else limit
        if bad > limit:
            raise TooManyUnreadableError(
                f'ADS: {"at least " if stopped else ""}{bad} of {n} unreadable — wrong '
                f'data_root? (more than max_unreadable={self.max_unreadable:g} of the pool; '
                f'e.g. {examples}). Scoring stopped; check the paths, or raise max_unreadable '
                'if the pool really is that damaged.')

    def _report(self, result):
        """Logs the unreadable and the non-finite images (never selected)."""
        bad = result.nonfinite
        if result.errors:
            print_log(f'ADS: {len(result.errors)} of {len(result.paths)} pool images are '
                      'unreadable and never selected', logger='current', level=30)
        if bad:
            shown = [result.paths[i] for i in bad[:5]]
            print_log(f'ADS: {len(bad)} images have a non-finite {self.strategy} score and are '
                      f'never selected, e.g. {shown}', logger='current', level=30)


# names that lived here before the split stay importable from here
__all__ = ['PoolScorer', 'ScoreResult', 'STRATEGIES', 'DEFAULT_SCORE_PIPELINE', 'SCORER_VERSION',
           'select_lowest', 'eq11_weights', 'check_num_samples', 'setup_fingerprint',
           'plan_batches', 'ScorePipelineError', 'TooManyUnreadableError', 'ScoreIOError',
           'SetupMismatchError']
