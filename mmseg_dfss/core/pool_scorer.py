"""Scores every image of an open-world pool for a sampling strategy (ADS, Sec. 3.3).

Strategies (lower score = kept first):

- ``'ads'``: the BN statistics distance d of Eq. 9 (:class:`BNStatsDistance`).
- ``'confidence'``: DFND's rule carried to pixels: mean over pixels of
  -log max softmax of the teacher's logits (at the input resolution).
- ``'random'``: a uniform key drawn with ``seed`` per pool index (the teacher is
  not run; images are still loaded so unreadable ones are never picked).

Images are loaded with a deterministic score pipeline, normalised by the
teacher's own ``data_preprocessor`` and batched only with images of the same
size, so no padding enters a score and a score does not depend on the batch.
Under torch.distributed each rank scores a shard and the scores are gathered.
"""
import copy
import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.dist import all_gather_object, barrier, get_dist_info
from mmengine.logging import print_log
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader, Dataset

from .bn_stats import BNStatsDistance
from .preprocess import non_padding_preprocessor
from .score_cache import ScoreCache
from .teacher import build_frozen_segmentor, load_model_config

STRATEGIES = ('ads', 'random', 'confidence')
# part of every cache fingerprint: bump when the way a score is computed changes
SCORER_VERSION = 2
DEFAULT_SCORE_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortestEdge', scale=256, max_size=1 << 30),
    dict(type='PackSegInputs'),
]


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


def _digest_state(model):
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f'{name}|{t.dtype}|{tuple(t.shape)}|'.encode())
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(memoryview(t.numpy()).cast('B'))  # no copy of the weights
    return h.hexdigest()


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=repr))


def setup_fingerprint(parts):
    """sha256 of a dict of JSON-able setup parts (sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, default=repr).encode('utf-8')
    return hashlib.sha256(blob).hexdigest()


class _ScoreView(Dataset):
    """The pool's samples under the score pipeline; a failure is returned as an
    error record instead of raising, so one bad file cannot stop the scoring."""

    def __init__(self, pool, indices, pipeline):
        self.pool = pool
        self.indices = list(indices)
        from mmseg.registry import TRANSFORMS
        self.pipeline = Compose([TRANSFORMS.build(t) if isinstance(t, dict) else t
                                 for t in pipeline])

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        index = self.indices[k]
        info = copy.deepcopy(self.pool.get_data_info(index))
        try:
            packed = self.pipeline(info)
        except Exception as e:  # unreadable / corrupt / not an image
            return dict(index=index, error=f'{type(e).__name__}: {e}'.strip())
        if packed is None:
            return dict(index=index, error='the score pipeline returned None')
        return dict(index=index, inputs=packed['inputs'], data_samples=packed['data_samples'])


def _as_list(batch):
    return batch


@dataclass
class ScoreResult:
    """Scores of a whole pool: ``scores[i]`` is NaN for an unreadable image."""
    strategy: str
    scores: np.ndarray
    paths: list
    errors: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)
    fingerprint: str = ''

    @property
    def nonfinite(self):
        """Readable images whose score is NaN or inf (never selected)."""
        return [int(i) for i in np.flatnonzero(~np.isfinite(self.scores))
                if int(i) not in self.errors]


class PoolScorer:
    """Scores a pool dataset with one strategy, through the cache.

    Args:
        teacher: segmentor config dict or file path (``mmseg::`` allowed).
        teacher_checkpoint: checkpoint path (None: random weights, tests only).
        strategy: ``'ads'`` | ``'random'`` | ``'confidence'``.
        bn_layers: ``'backbone'`` | ``'all'`` | list of regexes (``'ads'`` only).
        score_pipeline: deterministic pipeline ending in ``PackSegInputs``.
        batch_size: images per forward (images of one size only).
        num_workers: DataLoader workers loading the images.
        cache_dir: folder of score caches; None disables the cache.
        seed: seed of the ``'random'`` strategy.
        device: where the teacher runs (default: CUDA if available).
        progress: show a progress bar (rank 0).
    """

    def __init__(self, teacher, teacher_checkpoint=None, strategy='ads', bn_layers='backbone',
                 score_pipeline=None, batch_size=8, num_workers=0, cache_dir=None, seed=0,
                 device=None, progress=True):
        if strategy not in STRATEGIES:
            raise ValueError(f'strategy must be one of {STRATEGIES}, got {strategy!r}')
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'score_batch_size must be a positive integer, got {batch_size!r}')
        self.teacher_cfg = teacher
        self.teacher_checkpoint = teacher_checkpoint
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

    # ---------------------------------------------------------------- teacher
    def _build(self):
        model = build_frozen_segmentor(self.teacher_cfg, self.teacher_checkpoint, 'teacher')
        return model.to(self.device)

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
    def fingerprint(self, model, paths, layers, sizes):
        parts = dict(version=SCORER_VERSION, strategy=self.strategy,
                     score_pipeline=_jsonable(self.score_pipeline),
                     pool=hashlib.sha256(json.dumps([paths, sizes]).encode()).hexdigest())
        if self.strategy == 'random':
            parts['seed'] = self.seed
        else:
            parts['teacher_config'] = _jsonable(load_model_config(self.teacher_cfg).to_dict())
            parts['teacher_weights'] = _digest_state(model)
        if self.strategy == 'ads':
            parts['layers'] = layers
        return setup_fingerprint(parts)

    # ------------------------------------------------------------------ score
    def score(self, pool):
        """Scores every image of ``pool`` (a dataset with ``get_data_info``)."""
        n = len(pool)
        paths = [str(pool.get_data_info(i).get('img_path', i)) for i in range(n)]
        sizes = [_file_stamp(p) for p in paths]
        rank, world = get_dist_info()
        model, layers, score_fn, hooks = None, [], None, None
        if self.strategy != 'random':
            model = self._build()
            score_fn, hooks = self._score_fn(model)
            if hooks is not None:
                layers = [name for name, _ in hooks.layers]
        fp = self.fingerprint(model, paths, layers, sizes)

        cache, done = None, {}
        if self.cache_dir:
            cache = ScoreCache(self.cache_dir, fp, paths, self.strategy, rank=rank,
                               describe=dict(strategy=self.strategy, num_layers=len(layers),
                                             teacher_checkpoint=self.teacher_checkpoint))
            if rank == 0:
                cache.prepare()
            if world > 1:
                barrier()
            done = cache.load()
            if done and rank == 0:
                print_log(f'ADS cache {cache.dir}: reusing {len(done)}/{n} scores',
                          logger='current')
        todo = [i for i in range(n) if i not in done]
        mine = todo[rank::world]
        rng_keys = np.random.default_rng(self.seed).random(n) if self.strategy == 'random' else None
        try:
            new = self._run(pool, mine, model, score_fn, rng_keys, cache, rank)
        finally:
            if hooks is not None:
                hooks.remove()
            if cache is not None:
                cache.close()
        if world > 1:
            gathered = {}
            for part in all_gather_object(new):
                gathered.update(part)
            new = gathered
        done.update(new)

        scores = np.full(n, np.nan)
        errors = {}
        for i, (s, err) in done.items():
            if err is not None:
                errors[i] = err
            else:
                scores[i] = s
        result = ScoreResult(self.strategy, scores, paths, errors, layers, fp)
        self._report(result)
        return result

    def _run(self, pool, indices, model, score_fn, rng_keys, cache, rank):
        out = {}
        if not indices:
            return out
        view = _ScoreView(pool, indices, self.score_pipeline)
        loader = DataLoader(view, batch_size=self.batch_size, shuffle=False,
                            num_workers=self.num_workers, collate_fn=_as_list)
        bar = ProgressBar(len(indices)) if self.progress and rank == 0 else None
        buckets, buffered = {}, 0
        max_buffered = 4 * self.batch_size

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
            if rng_keys is not None:
                record([(it['index'], float(rng_keys[it['index']]), None) for it in items])
                return
            data = non_padding_preprocessor(model.data_preprocessor)(
                dict(inputs=[it['inputs'] for it in items],
                     data_samples=[it['data_samples'] for it in items]), False)
            s = score_fn(data['inputs'], data['data_samples']).cpu().numpy()
            record([(it['index'], float(v), None) for it, v in zip(items, s)])

        for batch in loader:
            for item in batch:
                if 'error' in item:
                    path = pool.get_data_info(item['index'])['img_path']
                    print_log(f'ADS: skipping unreadable image {path!r}: {item["error"]}',
                              logger='current', level=30)
                    record([(item['index'], None, item['error'])])
                    continue
                shape = tuple(item['inputs'].shape)
                buckets.setdefault(shape, []).append(item)
                buffered += 1
                if len(buckets[shape]) >= self.batch_size:
                    flush(shape)
                elif buffered > max_buffered:
                    flush(max(buckets, key=lambda k: len(buckets[k])))
        for shape in list(buckets):
            flush(shape)
        if bar is not None:
            print()
        return out

    def _report(self, result):
        bad = result.nonfinite
        if result.errors:
            print_log(f'ADS: {len(result.errors)} of {len(result.paths)} pool images are '
                      'unreadable and never selected', logger='current', level=30)
        if bad:
            shown = [result.paths[i] for i in bad[:5]]
            print_log(f'ADS: {len(bad)} images have a non-finite {self.strategy} score and are '
                      f'never selected, e.g. {shown}', logger='current', level=30)


def _file_stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


__all__ = ['PoolScorer', 'ScoreResult', 'select_lowest', 'eq11_weights', 'setup_fingerprint',
           'STRATEGIES', 'DEFAULT_SCORE_PIPELINE']
