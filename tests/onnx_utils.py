"""Comparing onnxruntime's and PyTorch's segmentation results as the ONNX export
promises (``PARITY_ATOL`` of ``mmseg_dfss.models.onnx_parity``), computed apart from
the library: values within the tolerance, and the same decision on every pixel that
no difference within the tolerance can flip."""
import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm


def spread_logits(segmentor, shape=(64, 64), seed=0):
    """A random-weight segmentor that depends on its input as a trained one does: BN
    running statistics of one batch of random raw images through its data_preprocessor
    (random statistics saturate the activations, and the output barely depends on the
    input, normalisation included), and a classifier scaled so that the logits spread
    (zoo init, std 0.01, leaves every pixel a near tie). Returns it in eval mode."""
    bns = [m for m in segmentor.modules() if isinstance(m, _BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: exactly this batch's statistics
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (4, 3, *shape), generator=g).float()
    segmentor.train()
    with torch.no_grad():
        data = segmentor.data_preprocessor(dict(inputs=list(images)), False)
        segmentor._forward(data['inputs'])
        segmentor.decode_head.conv_seg.weight.mul_(30)
    for m in bns:
        m.momentum = 0.1
    return segmentor.eval()


def assert_same_decisions(got_logits, ref_logits, atol, got_pred=None, threshold=None):
    """``got_*``: onnxruntime's ``seg_logits`` (and ``pred_sem_seg``, else decided from
    ``got_logits``); ``ref_logits``: ``test_step``'s. Pixels count when their top-2 margin
    exceeds ``2 * atol`` (two logits, each moved by up to ``atol``), or for one channel
    (``threshold``) when the sigmoid is further than ``atol`` from it.

    Returns:
        the fraction of pixels compared (assert it is large enough to mean something).
    """
    got, ref = np.asarray(got_logits, np.float64), np.asarray(ref_logits, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.abs(got - ref).max() <= atol, np.abs(got - ref).max()
    if threshold is None:
        top2 = np.partition(ref, -2, axis=1)
        decisive = top2[:, -1] - top2[:, -2] > 2 * atol
        want = ref.argmax(1)
        have = got.argmax(1) if got_pred is None else got_pred[:, 0]
    else:
        decisive = np.abs(ref[:, 0] - threshold) > atol
        want = ref[:, 0] > threshold
        have = got[:, 0] > threshold if got_pred is None else got_pred[:, 0].astype(bool)
    assert (have[decisive] == want[decisive]).all(), \
        f'{(have[decisive] != want[decisive]).sum()} decisive pixels decided differently'
    return float(decisive.mean())
