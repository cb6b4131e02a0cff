"""Which pool images are kept, and their weights (paper Sec. 3.3, Eq. 11).

The ``eps`` images with the lowest score are kept (for ADS the BN statistics
distance d of Eq. 9); each kept image i gets w_i = 1 - (d_i - min d)/(max d - min d)
over the kept set, which the datasets attach to their samples for the WDPD loss.
"""
import numpy as np


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


__all__ = ['check_num_samples', 'select_lowest', 'eq11_weights']
