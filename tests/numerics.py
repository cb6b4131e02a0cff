"""Comparing two numeric paths (float64 vs float32, 1 vs 2 processes, thread counts,
CPU kernels) as the product promises: values within its stated tolerance, and
decisions made from them (an argmax, the eps lowest scores) only where the margin
exceeds that tolerance, since closer calls may go either way on another machine."""
import numpy as np


def decided_pixels(logits, atol):
    """Mask of the pixels of ``logits`` (..., C, H, W) whose top-2 margin exceeds
    ``2 * atol``: two logit maps that agree within ``atol`` have the same argmax there."""
    top2 = np.sort(np.asarray(logits), axis=-3)[..., -2:, :, :]
    return top2[..., 1, :, :] - top2[..., 0, :, :] > 2 * atol


def assert_same_argmax(logits, labels, atol, min_decided=0.5):
    """``labels`` (another path's argmax) equal ``logits.argmax`` on every decided
    pixel, and most pixels are decided (else the check would say little)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    decided = decided_pixels(logits, atol)
    assert labels.shape == decided.shape, (labels.shape, decided.shape)
    assert decided.mean() >= min_decided, f'only {decided.mean():.1%} of pixels decided'
    wrong = (logits.argmax(-3) != labels) & decided
    assert not wrong.any(), f'{wrong.sum()} decided pixels differ, e.g. at ' \
        f'{np.argwhere(wrong)[:3].tolist()}'


def assert_same_selection(selected, scores, other_selected, rtol):
    """Two selections of the lowest scores (``selected`` made from ``scores``; the
    other from scores that agree with them within ``rtol``) keep the same images,
    except those within the tolerance of the cut, which may swap places."""
    scores = np.asarray(scores, dtype=np.float64)
    selected, other = set(map(int, selected)), set(map(int, other_selected))
    assert len(other) == len(selected)
    rest = [i for i in np.flatnonzero(np.isfinite(scores)) if i not in selected]
    if not rest:
        assert other == selected
        return
    hi = max(scores[i] for i in selected)
    lo = min(scores[i] for i in rest)
    tol = 2 * rtol * max(abs(hi), abs(lo))
    close = {i for i in selected if scores[i] >= lo - tol} | {i for i in rest
                                                              if scores[i] <= hi + tol}
    assert selected - close == other - close, (sorted(selected ^ other), sorted(close))


def assert_same_score_rows(rows, ref_rows, rtol):
    """Rows ``(index, img_path, score, weight, selected)`` of tools/ads_score.py's CSV
    from two numeric paths: the same images in order, scores within ``rtol``, the
    same selection up to swaps at the cut, and, where the selection is the same, the
    Eq. 11 weights within what ``rtol`` on the scores allows."""
    assert [r[:2] for r in rows] == [r[:2] for r in ref_rows]
    got = np.array([float(r[2]) for r in rows])
    ref = np.array([float(r[2]) for r in ref_rows])
    np.testing.assert_allclose(got, ref, rtol=rtol)
    sel = [k for k, r in enumerate(rows) if r[4] == '1']
    ref_sel = [k for k, r in enumerate(ref_rows) if r[4] == '1']
    assert_same_selection(ref_sel, ref, sel, rtol)
    assert all((r[3] == '') == (r[4] != '1') for r in rows + ref_rows)
    if sel == ref_sel and len(sel) > 1:
        d = ref[ref_sel]
        span = d.max() - d.min()
        # w = 1 - (d - min d) / (max d - min d): each d off by rtol * |d| moves w by at most
        atol = 4 * rtol * np.abs(d).max() / span if span > 0 else 0.0
        np.testing.assert_allclose([float(rows[k][3]) for k in sel],
                                   [float(ref_rows[k][3]) for k in sel], rtol=0, atol=atol)
