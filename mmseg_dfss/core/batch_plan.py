"""Batches of one input shape, planned before any image is decoded.

A score must not depend on its batch, so no padding may enter it: images are batched
only with images of the same input shape. The shapes follow from the image sizes
(COCO ``width``/``height``, or the file headers) through the score pipeline's
shape-only transforms, so the pool is planned in full batches of one shape and dealt
to the ranks; :class:`ShapeBatcher` then assembles the loaded images by that plan.
"""
import copy
import time
from collections import Counter

import numpy as np

from .image_header import is_transient_oserror, read_image_size
from .pool_errors import ScoreIOError
from .score_view import transform_name

# transforms whose output shape follows from the input image's size alone: with
# only these after the loader, a batch plan is made from sizes before loading
SHAPE_ONLY_TRANSFORMS = ('Resize', 'ResizeShortestEdge', 'PackSegInputs')
LOADERS = ('LoadImageFromFile', 'mmcv.LoadImageFromFile')


def read_header_size(path, io_retries=3, retry_delay=0.2):
    """``(h, w)`` from the file header, or the error text of an unreadable file;
    transient ``OSError``\\ s are retried, then raised as :class:`ScoreIOError`
    (never kept as a size)."""
    for attempt in range(io_retries + 1):
        try:
            return tuple(read_image_size(path))
        except Exception as e:
            if not is_transient_oserror(e):
                return f'{type(e).__name__}: {e}'.strip()
            if attempt == io_retries:
                raise ScoreIOError(e.errno, f'ADS: transient I/O error reading the header of '
                                   f'{path!r} after {io_retries} retries: {e}; nothing '
                                   'was cached for it, run again to resume') from e
            time.sleep(retry_delay * 2**attempt)


def _unpredictable(pipeline):
    """Why the pipeline's input shapes cannot be told from image sizes, or None."""
    first = pipeline[0] if pipeline else None
    if not isinstance(first, dict) or first.get('type') not in LOADERS:
        return f'its first transform is {transform_name(first)}, not LoadImageFromFile'
    if first.get('color_type', 'color') != 'color':
        return f"LoadImageFromFile(color_type={first['color_type']!r})"
    unknown = [transform_name(t) for t in pipeline[1:]
               if not isinstance(t, dict)
               or transform_name(t).split('.')[-1] not in SHAPE_ONLY_TRANSFORMS]
    if unknown:
        return (f'transform(s) {unknown} may change the shape in ways only loading '
                f'tells (known: {list(SHAPE_ONLY_TRANSFORMS)})')
    return None


class ShapePredictor:
    """The score pipeline's input shape ``(C, H, W)`` from an image's size, by
    running its shape-only transforms on a blank image of that size (exact by
    construction; memoised per size). ``None`` when the pipeline has other
    transforms (``note`` says which): those images are loaded to learn it."""

    def __init__(self, pipeline):
        self.transforms = None
        self._memo = {}
        self.note = _unpredictable(pipeline)
        if self.note is None:
            from mmseg.registry import TRANSFORMS
            self.transforms = [TRANSFORMS.build(copy.deepcopy(t)) for t in pipeline[1:]]

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


class ShapeBatcher:
    """Assembles loaded images (records with ``inputs``) into batches of one input
    shape, following a plan from :func:`plan_batches`, and hands each to ``run``.

    A batch goes when it is full, or when the plan's last image of its shape has
    passed; images of a shape the plan did not foresee wait, at most
    ``4 * batch_size`` of them, before the largest group goes. ``batches`` lists
    ``(input shape, size)`` of every batch handed on.
    """

    def __init__(self, plan, batch_size, run):
        self.predicted = {i: s for s, idx in plan for i in idx}
        self.remaining = Counter(s for s, idx in plan if s is not None for _ in idx)
        self.batch_size = batch_size
        self.max_buffered = 4 * batch_size
        self.run = run
        self.buckets, self.buffered, self.batches = {}, 0, []

    def add(self, item):
        """Queues a loaded image under its input shape."""
        shape = tuple(item['inputs'].shape)
        self.buckets.setdefault(shape, []).append(item)
        self.buffered += 1
        if len(self.buckets[shape]) >= self.batch_size:
            self.flush(shape)
        elif self.buffered > self.max_buffered:
            self.flush(max(self.buckets, key=lambda k: len(self.buckets[k])))

    def passed(self, index):
        """The planned image ``index`` went by (queued or unreadable)."""
        s = self.predicted[index]
        if s is not None:
            self.remaining[s] -= 1
            if self.remaining[s] == 0 and s in self.buckets:  # the last image of this shape
                self.flush(s)

    def flush(self, shape):
        """Hands on the images waiting under ``shape`` as one batch."""
        items = self.buckets.pop(shape)
        self.buffered -= len(items)
        self.batches.append((shape, len(items)))
        self.run(items)

    def flush_all(self):
        """Hands on every waiting group (the end of the loader)."""
        for shape in list(self.buckets):
            self.flush(shape)


__all__ = ['SHAPE_ONLY_TRANSFORMS', 'ShapePredictor', 'ShapeBatcher', 'plan_batches',
           'read_header_size']
