"""Scores every image of an open-world pool for a sampling strategy (ADS, Sec. 3.3).

Strategies (lower score = kept first):

- ``'ads'``: the BN statistics distance d of Eq. 9 (:class:`BNStatsDistance`).
- ``'confidence'``: DFND's rule carried to pixels: mean over pixels of
  -log max softmax of the teacher's logits (at the input resolution).
- ``'random'``: a uniform key drawn with ``seed`` per pool index (the teacher is
  not run and no image is decoded; a file whose header cannot be read is
  skipped as unreadable).

Images are loaded with a deterministic score pipeline, normalised by the
teacher's own ``data_preprocessor`` and batched only with images of the same
input shape, so no padding enters a score and a score does not depend on the
batch. The shapes are known before loading (COCO ``width``/``height``, or the
image file headers), so the pool is scored in full batches of one shape.

Under torch.distributed all ranks work from one view of the cache (rank 0 reads
it and broadcasts it before anyone appends), the ranks' setups are checked to
be equal, each rank scores a share of whole batches, and every rank ends with
the same complete scores.

Errors are told apart: an unreadable file is skipped, counted and cached as
such; a pipeline/config error stops at the first image naming the transform; a
transient ``OSError`` is retried and never cached; more than ``max_unreadable``
of the pool unreadable stops the scoring ("wrong data_root?").
"""
import copy
import hashlib
import json
import os
import socket
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.dist import all_gather_object, broadcast_object_list, get_dist_info
from mmengine.logging import print_log
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader, Dataset

from .bn_stats import BNStatsDistance
from .image_header import is_transient_oserror, read_image_size
from .preprocess import non_padding_preprocessor
from .score_cache import ScoreCache, SizeCache
from .teacher import (build_frozen_segmentor, check_teacher_checkpoint, load_model_config,
                      resolve_teacher_checkpoint, teacher_record)

STRATEGIES = ('ads', 'random', 'confidence')
# part of every cache fingerprint: bump when the way a score is computed changes
SCORER_VERSION = 3  # 3: transient I/O errors and pipeline errors are never cached
DEFAULT_SCORE_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortestEdge', scale=256, max_size=1 << 30),
    dict(type='PackSegInputs'),
]
# transforms whose output shape follows from the input image's size alone: with
# only these after the loader, a batch plan is made from sizes before loading
SHAPE_ONLY_TRANSFORMS = ('Resize', 'ResizeShortestEdge', 'PackSegInputs')


class ScorePipelineError(RuntimeError):
    """The score pipeline (a config error) failed on an image: never a skip."""


class TooManyUnreadableError(RuntimeError):
    """More than ``max_unreadable`` of the pool could not be read."""


class ScoreIOError(OSError):
    """A transient I/O error that outlasted its retries (nothing is cached for it)."""


class SetupMismatchError(RuntimeError):
    """Ranks of one distributed scoring see different setups or pools."""


def eq11_weights(scores):
    """Eq. 11 over the given (selected) scores: 1 - (d - min d)/(max d - min d);
    all 1 when max d == min d."""
    d = np.asarray(scores, dtype=np.float64)
    if d.size == 0:
        return d.copy()
    lo, hi = d.min(), d.max()
    if hi == lo:
        return np.ones_like(d)
    return 1.0 - (d - lo) / (hi - lo)


def check_num_samples(num_samples):
    """eps must be a positive integer (checked before any scoring work)."""
    if (isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer))
            or num_samples <= 0):
        raise ValueError(f'num_samples (eps) must be a positive integer, got {num_samples!r}')


def select_lowest(scores, num_samples):
    """Pool indices of the ``num_samples`` lowest finite scores, ties broken by
    pool index. NaN marks unreadable images; NaN/inf are never selected."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(scores))
    check_num_samples(num_samples)
    if num_samples > finite.size:
        raise ValueError(
            f'num_samples (eps) = {num_samples} is larger than the {finite.size} pool images '
            f'with a finite score (pool of {scores.size}; '
            f'{scores.size - finite.size} unreadable or non-finite)')
    order = np.lexsort((finite, scores[finite]))
    return finite[order[:num_samples]]


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=repr))


def setup_fingerprint(parts):
    """sha256 of a dict of JSON-able setup parts (sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, default=repr).encode('utf-8')
    return hashlib.sha256(blob).hexdigest()


def _unreadable_exc(exc):
    """Whether a failure of the *loading* transform belongs to the file (skip it)
    rather than to the pipeline (stop): a missing/unreadable file or a decoder
    error. KeyError/TypeError/AttributeError/... there are config errors."""
    if isinstance(exc, OSError):  # includes PIL.UnidentifiedImageError
        return not is_transient_oserror(exc)
    if isinstance(exc, (AssertionError, ValueError, EOFError, SyntaxError, MemoryError)):
        return True
    mod = type(exc).__module__ or ''
    # cv2.error, zlib.error, struct.error, tifffile/imageio decoder errors
    return (mod.split('.')[0] in ('cv2', 'zlib', 'struct', 'PIL', 'tifffile', 'imageio',
                                   'turbojpeg')
            or type(exc).__name__ == 'error')


def _type_name(t):
    return t.get('type', '?') if isinstance(t, dict) else type(t).__name__


class _ScoreView(Dataset):
    """The pool's samples under the score pipeline. A failure is returned as a
    record instead of raising (so DataLoader workers hand it back intact):

    - ``kind='unreadable'``: the loading transform (the first) failed on the file;
    - ``kind='pipeline'``: any other failure, named by transform and file;
    - ``kind='transient'``: an ``OSError`` such as EIO/EMFILE/ESTALE that
      outlasted ``io_retries`` retries (waits ``retry_delay * 2**k``).
    """

    def __init__(self, pool, indices, pipeline, io_retries=3, retry_delay=0.2):
        self.pool = pool
        self.indices = list(indices)
        from mmseg.registry import TRANSFORMS
        self.names = [_type_name(t) for t in pipeline]
        self.transforms = [TRANSFORMS.build(copy.deepcopy(t)) if isinstance(t, dict) else t
                           for t in pipeline]
        self.pipeline = Compose(self.transforms)
        self.io_retries = io_retries
        self.retry_delay = retry_delay
        self._broken = None  # a pipeline error: the rest of this process's share is not run

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        index = self.indices[k]
        if self._broken is not None:
            return dict(self._broken, index=index)
        base = self.pool.get_data_info(index)
        path = base.get('img_path', index)
        for attempt in range(self.io_retries + 1):
            rec = self._apply(index, path, copy.deepcopy(base))
            if rec.get('kind') != 'transient' or attempt == self.io_retries:
                return rec
            time.sleep(self.retry_delay * 2**attempt)
        return rec

    def _apply(self, index, path, info):
        for pos, (name, t) in enumerate(zip(self.names, self.transforms)):
            where = f'score pipeline transform #{pos} {name!r} on {path!r}'
            try:
                out = t(info)
            except Exception as e:  # classified below; nothing is swallowed silently
                msg = f'{type(e).__name__}: {e}'.strip()
                if is_transient_oserror(e):
                    return dict(index=index, kind='transient', error=f'{where}: {msg}')
                if pos == 0 and _unreadable_exc(e):
                    return dict(index=index, kind='unreadable', error=msg)
                self._broken = dict(index=index, kind='pipeline', error=f'{where} failed: {msg}')
                return self._broken
            if out is None:
                if pos == 0:
                    return dict(index=index, kind='unreadable',
                                error=f'{name} returned None (the file could not be loaded)')
                return dict(index=index, kind='pipeline',
                            error=f'{where} returned None; a score pipeline must give one '
                                  'output per image')
            info = out
        if not isinstance(info, dict) or 'inputs' not in info or 'data_samples' not in info:
            return dict(index=index, kind='pipeline',
                        error=f'the score pipeline gave no inputs/data_samples on {path!r}; '
                              'it must end with PackSegInputs')
        return dict(index=index, inputs=info['inputs'], data_samples=info['data_samples'])


class _ShapePredictor:
    """The score pipeline's input shape ``(C, H, W)`` from an image's size, by
    running its shape-only transforms on a blank image of that size (exact by
    construction; memoised per size). ``None`` when the pipeline has other
    transforms (``note`` says which): those images are loaded to learn it."""

    def __init__(self, pipeline):
        self.note = None
        self.transforms = None
        self._memo = {}
        first = pipeline[0] if pipeline else None
        if not isinstance(first, dict) or first.get('type') not in (
                'LoadImageFromFile', 'mmcv.LoadImageFromFile'):
            self.note = f'its first transform is {_type_name(first)}, not LoadImageFromFile'
            return
        if first.get('color_type', 'color') != 'color':
            self.note = f"LoadImageFromFile(color_type={first['color_type']!r})"
            return
        rest = pipeline[1:]
        unknown = [_type_name(t) for t in rest
                   if not isinstance(t, dict) or _type_name(t).split('.')[-1]
                   not in SHAPE_ONLY_TRANSFORMS]
        if unknown:
            self.note = (f'transform(s) {unknown} may change the shape in ways only loading '
                         f'tells (known: {list(SHAPE_ONLY_TRANSFORMS)})')
            return
        from mmseg.registry import TRANSFORMS
        self.transforms = [TRANSFORMS.build(copy.deepcopy(t)) for t in rest]

    def __call__(self, hw):
        if self.transforms is None or not isinstance(hw, tuple):
            return None  # unpredictable pipeline, or no size (header unreadable)
        hw = (int(hw[0]), int(hw[1]))
        if hw not in self._memo:
            results = dict(img=np.zeros(hw + (3, ), np.uint8), img_shape=hw, ori_shape=hw,
                           img_path='', seg_fields=[], reduce_zero_label=False)
            try:
                for t in self.transforms:
                    results = t(results)
                self._memo[hw] = tuple(int(v) for v in results['inputs'].shape)
            except Exception:  # a degenerate size: loading will tell
                self._memo[hw] = None
        return self._memo[hw]


def plan_batches(indices, shapes, batch_size, world=1):
    """Splits ``indices`` into batches of one predicted shape and deals them to
    ``world`` ranks. Every batch but the last of each shape is full; indices of
    unknown shape (``shapes[i] is None``) come last, in pool order. Returns, per
    rank, a list of ``(shape or None, [indices])`` (balanced by image count)."""
    groups, unknown = {}, []
    for i in indices:
        s = shapes.get(i)
        (groups.setdefault(s, []) if s is not None else unknown).append(i)
    order = sorted(groups, key=lambda s: (-len(groups[s]), s))
    chunks = [(s, groups[s][k:k + batch_size]) for s in order
              for k in range(0, len(groups[s]), batch_size)]
    chunks += [(None, unknown[k:k + batch_size]) for k in range(0, len(unknown), batch_size)]
    loads, owned = [0] * world, [[] for _ in range(world)]
    for c in sorted(range(len(chunks)), key=lambda c: -len(chunks[c][1])):
        r = min(range(world), key=lambda r: (loads[r], r))
        owned[r].append(c)
        loads[r] += len(chunks[c][1])
    return [[chunks[c] for c in sorted(cs)] for cs in owned]


def _as_list(batch):
    return batch


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


def _broadcast(obj):
    box = [obj]
    broadcast_object_list(box, src=0)
    return box[0]


def _describe_stamp(stamp):
    if stamp is None:
        return 'missing'
    size, mtime_ns = stamp
    return f'{size} bytes, mtime {time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(mtime_ns / 1e9))}'


class PoolScorer:
    """Scores a pool dataset with one strategy, through the cache.

    Args:
        teacher: segmentor config dict or file path (``mmseg::`` allowed).
        teacher_checkpoint: checkpoint path or URL (any ``CheckpointLoader`` scheme), or
            ``'metafile'``: the Weights the installed metafile lists for a zoo teacher.
        strategy: ``'ads'`` | ``'random'`` | ``'confidence'``.
        bn_layers: ``'backbone'`` | ``'all'`` | list of regexes (``'ads'`` only).
        score_pipeline: deterministic pipeline ending in ``PackSegInputs``.
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
        self.strategy = strategy
        self.bn_layers = bn_layers
        self.score_pipeline = copy.deepcopy(
            list(score_pipeline) if score_pipeline is not None else DEFAULT_SCORE_PIPELINE)
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
        checkpoint = resolve_teacher_checkpoint(self.teacher_cfg, self.teacher_checkpoint)
        model = build_frozen_segmentor(self.teacher_cfg, checkpoint, 'teacher',
                                       allow_random_teacher=self.allow_random_teacher)
        self.teacher_record = teacher_record(self.teacher_cfg, checkpoint, model)
        model = model.to(self.device)
        if torch.device(self.device).type == 'cuda' and hasattr(model.data_preprocessor,
                                                                '_non_blocking'):
            model.data_preprocessor._non_blocking = True  # batches come from pinned memory
        return model

    def _score_fn(self, model):
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
        parts = dict(version=SCORER_VERSION, strategy=self.strategy,
                     score_pipeline=_jsonable(self.score_pipeline),
                     pool=hashlib.sha256(json.dumps([paths, sizes]).encode()).hexdigest())
        if self.strategy == 'random':
            parts['seed'] = self.seed
        else:
            parts['teacher_config'] = _jsonable(load_model_config(self.teacher_cfg).to_dict())
            parts['teacher_weights'] = self.teacher_record['weights_digest']  # of model
        if self.strategy == 'ads':
            parts['layers'] = layers
        return parts

    def fingerprint(self, model, paths, layers, sizes):
        return setup_fingerprint(self._parts(model, paths, layers, sizes))

    def _check_same_setup(self, parts, paths, stamps, rank):
        """Every rank must score the same setup and see the same pool files;
        otherwise they would write different scores under one cache."""
        digests = {k: setup_fingerprint(v) for k, v in parts.items()}
        step = 4096
        chunks = [setup_fingerprint([paths[k:k + step], stamps[k:k + step]])
                  for k in range(0, len(paths), step)]
        everyone = all_gather_object((socket.gethostname(), len(paths), digests, chunks))
        host0, n0, dig0, ch0 = everyone[0]
        bad = [(r, e) for r, e in enumerate(everyone) if e[1:] != everyone[0][1:]]
        if not bad:
            return
        r, (host, n, dig, ch) = bad[0]
        where = f'rank {r} (host {host}) and rank 0 (host {host0})'
        diff = [k for k in sorted(set(dig0) | set(dig)) if dig0.get(k) != dig.get(k)
                and k != 'pool']
        if n != n0 or ch != ch0:
            # find the first pool entry that differs; every rank takes part
            c = next((k for k, (a, b) in enumerate(zip(ch0, ch)) if a != b), min(len(ch0),
                                                                                 len(ch)))
            lo = c * step
            rows = all_gather_object((paths[lo:lo + step], stamps[lo:lo + step]))
            (p0, s0), (p1, s1) = rows[0], rows[r]
            j = next((j for j in range(min(len(p0), len(p1)))
                      if p0[j] != p1[j] or s0[j] != s1[j]), min(len(p0), len(p1)))
            if j >= min(len(p0), len(p1)):
                detail = f'the pool has {n0} images on rank 0 and {n} on rank {r}'
            elif p0[j] != p1[j]:
                detail = (f'pool image {lo + j} is {p0[j]!r} on rank 0 but {p1[j]!r} on rank '
                          f'{r} (a node-local data_root or path?)')
            else:
                detail = (f'pool image {lo + j} {p0[j]!r} has file stamps '
                          f'({_describe_stamp(s0[j])}) on rank 0 but '
                          f'({_describe_stamp(s1[j])}) on rank {r} (a copy of the pool '
                          'that differs between nodes?)')
            raise SetupMismatchError(
                f'ADS: {where} see different pools: {detail}. All ranks must read the same '
                'pool files, e.g. from one shared filesystem.')
        raise SetupMismatchError(
            f'ADS: {where} have different scoring setups ({", ".join(diff)} differ); all '
            'ranks must use the same teacher, teacher_checkpoint and score settings.')

    # ------------------------------------------------------------------ score
    def score(self, pool):
        """Scores every image of ``pool`` (a dataset with ``get_data_info``).
        An info's ``height``/``width`` (COCO) give the image size without I/O."""
        n = len(pool)
        paths, hints = [], []
        for i in range(n):
            info = pool.get_data_info(i)
            paths.append(str(info.get('img_path', i)))
            h, w = info.get('height'), info.get('width')
            hints.append((int(h), int(w)) if h and w else None)
        stamps = [_file_stamp(p) for p in paths]
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
                self._check_same_setup(parts, paths, stamps, rank)
            done, known, cache = self._shared_view(fp, paths, stamps, layers, n, rank, world)
            todo = [i for i in range(n) if i not in done]
            sizes = self._sizes(todo, paths, stamps, hints, known, rank, world)
            new, batches, exc = {}, [], None
            try:
                if self.strategy == 'random':
                    new = self._random(todo, paths, sizes, cache, rank, world)
                else:
                    predict = _ShapePredictor(self.score_pipeline)
                    if predict.note and rank == 0 and todo:
                        print_log(f'ADS: score pipeline input shapes are not predicted from '
                                  f'image sizes ({predict.note}); images are loaded to learn '
                                  'their shape and batches may not be full', logger='current',
                                  level=30)
                    shapes = {i: predict(sizes.get(i)) for i in todo}
                    plan = plan_batches(todo, shapes, self.batch_size, world)[rank]
                    bad_before = sum(1 for _, e in done.values() if e is not None)
                    new, batches = self._run(pool, plan, model, score_fn, cache, rank, n,
                                             bad_before)
            except Exception as e:  # every rank must learn of it, or the others hang
                exc = e
            finally:
                if cache is not None:
                    cache.close()
            if world > 1:  # (an exception may not pickle: its name and text travel)
                gathered = all_gather_object(
                    (new, None if exc is None else (type(exc).__name__, str(exc))))
                new = {}
                for part, _ in gathered:
                    new.update(part)
                errs = [(r, e) for r, (_, e) in enumerate(gathered) if e is not None]
                if exc is None and errs:  # every rank stops with the first rank's error
                    r, (name, msg) = errs[0]
                    ours = {c.__name__: c for c in (ScorePipelineError, TooManyUnreadableError,
                                                    SetupMismatchError, ScoreIOError)}
                    raise (ours[name](f'(on rank {r}) {msg}') if name in ours else
                           RuntimeError(f'ADS scoring failed on rank {r}: {name}: {msg}'))
            if exc is not None:
                raise exc
        finally:
            if hooks is not None:
                hooks.remove()
        done.update(new)
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

    def _shared_view(self, fp, paths, stamps, layers, n, rank, world):
        """One view of the cache for all ranks: rank 0 prepares and reads it
        (and the cached image sizes) and broadcasts what it read; nobody appends
        before that broadcast. Returns ``(done, known sizes, cache)``."""
        cache = None
        if self.cache_dir:
            cache = ScoreCache(self.cache_dir, fp, paths, self.strategy, rank=rank,
                               describe=dict(strategy=self.strategy, num_layers=len(layers),
                                             teacher_checkpoint=self.teacher_checkpoint))
        state = None
        if rank == 0:
            try:
                done, known, token = {}, {}, None
                if cache is not None:
                    cache.prepare()
                    done = cache.load()
                    if done:
                        print_log(f'ADS cache {cache.dir}: reusing {len(done)}/{n} scores',
                                  logger='current')
                    cached = SizeCache(self.cache_dir).load()
                    for i in range(n):
                        if i not in done and paths[i] in cached \
                                and cached[paths[i]][0] == stamps[i]:
                            known[i] = cached[paths[i]][1]
                    if world > 1:  # is cache_dir one folder for every rank?
                        token = f'.rank0-{uuid.uuid4().hex}'
                        open(os.path.join(cache.dir, token), 'w').close()
                state = ('ok', done, known, token)
            except Exception as e:
                state = ('error', f'{type(e).__name__}: {e}', None, None)
                if world == 1:
                    raise
        if world > 1:
            state = _broadcast(state)
        if state[0] == 'error':
            raise RuntimeError(f'ADS: rank 0 could not read the score cache: {state[1]}')
        _, done, known, token = state
        if world > 1 and cache is not None:
            seen = all_gather_object((socket.gethostname(), os.path.abspath(cache.dir),
                                      os.path.exists(os.path.join(cache.dir, token))))
            if rank == 0:
                os.remove(os.path.join(cache.dir, token))
            blind = [(r, h, d) for r, (h, d, ok) in enumerate(seen) if not ok]
            if blind:
                r, h, d = blind[0]
                raise SetupMismatchError(
                    f'ADS: cache_dir is not shared between ranks: rank {r} (host {h}) does not '
                    f'see, in {d}, the file rank 0 (host {seen[0][0]}) wrote in {seen[0][1]}. '
                    'Put cache_dir on a filesystem all nodes share.')
        return done, known, cache

    def _sizes(self, todo, paths, stamps, hints, known, rank, world):
        """``{index: (h, w) or error text}`` of the images to score: COCO hints
        first, then cached header sizes, then headers read now (shared out over
        the ranks and threads; rank 0 keeps them beside the cache)."""
        need_header = self.strategy == 'random'
        sizes = {i: hints[i] for i in todo if hints[i] is not None and not need_header}
        for i in todo:
            if i not in sizes and i in known:
                sizes[i] = known[i]
        if self.strategy != 'random' and _ShapePredictor(self.score_pipeline).transforms is None:
            return sizes  # shapes are not predictable: no header is worth reading
        missing = [i for i in todo if i not in sizes]
        mine = missing[rank::world]
        read, exc = {}, None
        try:
            with ThreadPoolExecutor(max_workers=8) as ex:
                read = dict(zip(mine, ex.map(lambda i: self._header(paths[i]), mine)))
        except Exception as e:  # raised below, after the other ranks have heard of it
            exc = e
        if world > 1:
            parts = all_gather_object((read, None if exc is None else (type(exc).__name__,
                                                                       str(exc))))
            read = {}
            for part, _ in parts:
                read.update(part)
            errs = [(r, e) for r, (_, e) in enumerate(parts) if e is not None]
            if exc is None and errs:
                r, e = errs[0]
                raise ScoreIOError(f'(on rank {r}) {e[1]}')
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
        for attempt in range(self.io_retries + 1):
            try:
                return tuple(read_image_size(path))
            except Exception as e:
                if not is_transient_oserror(e):
                    return f'{type(e).__name__}: {e}'.strip()
                if attempt == self.io_retries:
                    raise ScoreIOError(e.errno, f'ADS: transient I/O error reading the header of '
                                       f'{path!r} after {self.io_retries} retries: {e}; nothing '
                                       'was cached for it, run again to resume') from e
                time.sleep(self.retry_delay * 2**attempt)

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
        out, batches = {}, []
        order = [i for _, idx in plan for i in idx]
        if not order:
            return out, batches
        predicted = {i: s for s, idx in plan for i in idx}
        remaining = Counter(s for s, idx in plan if s is not None for _ in idx)
        view = _ScoreView(pool, order, self.score_pipeline, self.io_retries, self.retry_delay)
        loader = DataLoader(view, batch_size=self.batch_size, shuffle=False,
                            num_workers=self.num_workers, collate_fn=_as_list,
                            pin_memory=torch.device(self.device).type == 'cuda')
        bar = ProgressBar(len(order)) if self.progress and rank == 0 else None
        buckets, buffered = {}, 0
        max_buffered = 4 * self.batch_size  # only images of unforeseen shape wait here
        bad, limit = bad_before, self.max_unreadable * n

        def record(recs):
            for i, s, e in recs:
                out[i] = (s, e)
            if cache is not None:
                cache.write(recs)
            if bar is not None:
                for _ in recs:
                    bar.update()

        def flush(shape):
            nonlocal buffered
            items = buckets.pop(shape)
            buffered -= len(items)
            batches.append((shape, len(items)))
            data = non_padding_preprocessor(model.data_preprocessor)(
                dict(inputs=[it['inputs'] for it in items],
                     data_samples=[it['data_samples'] for it in items]), False)
            s = score_fn(data['inputs'], data['data_samples']).cpu().numpy()
            record([(it['index'], float(v), None) for it, v in zip(items, s)])

        for batch in loader:
            for item in batch:
                i = item['index']
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
                    print_log(f'ADS: skipping unreadable image {paths_of(pool, i)!r}: '
                              f'{item["error"]}', logger='current', level=30)
                    record([(i, None, item['error'])])
                    bad += 1
                    self._check_unreadable(bad, n, [paths_of(pool, i)], stopped=True,
                                           limit=limit)
                else:
                    shape = tuple(item['inputs'].shape)
                    buckets.setdefault(shape, []).append(item)
                    buffered += 1
                    if len(buckets[shape]) >= self.batch_size:
                        flush(shape)
                    elif buffered > max_buffered:
                        flush(max(buckets, key=lambda k: len(buckets[k])))
                s = predicted[i]
                if s is not None:
                    remaining[s] -= 1
                    if remaining[s] == 0 and s in buckets:  # the last image of this shape
                        flush(s)
        for shape in list(buckets):
            flush(shape)
        if bar is not None:
            print()
        return out, batches

    def _check_unreadable(self, bad, n, examples, stopped=False, limit=None):
        limit = self.max_unreadable * n if limit is None else limit
        if bad > limit:
            raise TooManyUnreadableError(
                f'ADS: {"at least " if stopped else ""}{bad} of {n} unreadable — wrong '
                f'data_root? (more than max_unreadable={self.max_unreadable:g} of the pool; '
                f'e.g. {examples}). Scoring stopped; check the paths, or raise max_unreadable '
                'if the pool really is that damaged.')

    def _report(self, result):
        bad = result.nonfinite
        if result.errors:
            print_log(f'ADS: {len(result.errors)} of {len(result.paths)} pool images are '
                      'unreadable and never selected', logger='current', level=30)
        if bad:
            shown = [result.paths[i] for i in bad[:5]]
            print_log(f'ADS: {len(bad)} images have a non-finite {self.strategy} score and are '
                      f'never selected, e.g. {shown}', logger='current', level=30)


def paths_of(pool, index):
    return pool.get_data_info(index).get('img_path', index)


def _file_stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


__all__ = ['PoolScorer', 'ScoreResult', 'select_lowest', 'eq11_weights', 'setup_fingerprint',
           'plan_batches', 'STRATEGIES', 'DEFAULT_SCORE_PIPELINE', 'ScorePipelineError',
           'TooManyUnreadableError', 'ScoreIOError', 'SetupMismatchError']
