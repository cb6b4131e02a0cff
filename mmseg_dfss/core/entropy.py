"""Image information entropy of a pool: the paper's R(D) (Eq. 6) and Table 5.

For every image: the Shannon entropy (bits) of its 256-bin grey-level histogram,
H = -sum_k p_k log2 p_k, on the full-size image converted to grey (ITU-R 601
luma, OpenCV's). A pool is summarised by the mean, median and (population)
variance of H over its readable images, the three statistics of Table 5.

One implementation, used by ``tools/pool_entropy.py`` and
``tools/compare_pools.py``.
"""
import sys

import numpy as np


def grey_entropy(path):
    """Entropy in bits of the grey-level histogram of one image; None when the
    file cannot be read."""
    import mmcv
    try:
        img = mmcv.imread(path, flag='grayscale')
    except Exception:
        return None
    if img is None or img.size == 0:
        return None
    counts = np.bincount(img.ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / img.size
    return float(-(p * np.log2(p)).sum()) + 0.0  # no -0.0 for a flat image


def summarize_entropy(entropies):
    """Table 5's statistics (and the range) of a list of per-image entropies."""
    e = np.asarray(entropies, np.float64)
    if e.size == 0:
        raise ValueError('no entropy to summarise (no readable image)')
    return dict(num_images=int(e.size), mean=float(e.mean()), median=float(np.median(e)),
                variance=float(e.var()), min=float(e.min()), max=float(e.max()))


def iter_entropies(paths, workers=1, progress=True, title=None):
    """Yields ``grey_entropy(path)`` for every path, in order (None: unreadable).

    ``workers`` > 1 reads in that many processes; ``progress`` shows MMEngine's
    progress bar on stderr (so a tool's stdout stays parseable).
    """
    from mmengine.utils import ProgressBar
    paths = list(paths)
    bar = None
    if progress and paths:
        if title:
            print(title, file=sys.stderr, flush=True)
        bar = ProgressBar(len(paths), file=sys.stderr)
    pool = None
    if workers > 1:
        from multiprocessing import Pool
        pool = Pool(workers)
        values = pool.imap(grey_entropy, paths, chunksize=16)
    else:
        values = map(grey_entropy, paths)
    try:
        for h in values:
            if bar is not None:
                bar.update()
            yield h
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if bar is not None:
            print(file=sys.stderr, flush=True)


def pool_entropies(paths, workers=1, progress=True, title=None):
    """``(entropies, unreadable)``: the entropies of the readable images (in
    path order) and the paths that could not be read."""
    paths = list(paths)
    entropies, unreadable = [], []
    for i, h in enumerate(iter_entropies(paths, workers, progress, title)):
        if h is None:
            unreadable.append(paths[i])
        else:
            entropies.append(h)
    return entropies, unreadable


__all__ = ['grey_entropy', 'summarize_entropy', 'iter_entropies', 'pool_entropies']
