"""The parity check: onnxruntime on an exported graph against MMSeg's own ``test_step``.

Both run on the same raw image batch (``ori_shape`` = the input size, so no resize back).
What the check promises, and what ``tools/export_onnx.py`` exits 1 on otherwise:

- ``max |onnxruntime - test_step| <= PARITY_ATOL`` over ``seg_logits`` (the sigmoid for
  a one-channel head);
- the graph's ``pred_sem_seg`` equals ``test_step``'s on every *decisive* pixel: one
  whose ``test_step`` result is further from a decision boundary than the tolerance can
  move it (:func:`decisive_pixels`). Elsewhere two correct float32 paths may decide
  differently, so those pixels are counted and reported, never compared.

``PARITY_ATOL`` covers two numeric paths of float32 (PyTorch's CPU kernels and
onnxruntime's, which differ from CPU to CPU with its instruction set): the tests'
models, with logits of std 0.6-0.75, differed by 4e-6 to 8.4e-5, also under
``ATEN_CPU_CAPABILITY=default`` and ``OMP_NUM_THREADS=1`` (docs/deploy.md); 1e-3 leaves
an order of magnitude for other CPUs and deeper models.
"""
import contextlib

import numpy as np
import torch
from mmengine.logging import print_log

from .onnx_wrapper import INPUT_NAME, OUTPUT_NAMES, inference_mode, require

PARITY_ATOL = 1e-3


class OnnxParityError(RuntimeError):
    """onnxruntime's results differ from ``test_step``'s by more than the tolerance,
    or onnxruntime cannot run the graph on the input."""


def random_image(shape, batch=1, seed=0):
    """A raw BGR 0-255 float batch, as LoadImageFromFile + stacking give."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, *shape), generator=g).float()


def ort_session(onnx_file, threads=None):
    """A CPU onnxruntime session (``threads``: intra-op threads, one inter-op)."""
    ort = require('onnxruntime')
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_file, opts, providers=['CPUExecutionProvider'])


@contextlib.contextmanager
def _inference_mode(segmentor, mode):
    """``segmentor.test_cfg.mode`` set to ``mode`` for the block (None: unchanged)."""
    old = inference_mode(segmentor)
    if mode in (None, old):
        yield
        return
    segmentor.test_cfg.mode = mode
    try:
        yield
    finally:
        segmentor.test_cfg.mode = old


def mmseg_results(segmentor, image, mode=None):
    """MMSeg's own ``test_step`` (data_preprocessor, padding and crop, ``predict``,
    ``postprocess_result``) on raw BGR ``image`` (N x 3 x H x W, 0-255).

    ``mode``: run ``'whole'`` or ``'slide'`` inference instead of the config's.

    Returns:
        (seg_logits N x C x H x W, pred_sem_seg N x 1 x H x W int64)
    """
    from mmseg.structures import SegDataSample
    h, w = image.shape[2:]
    data = dict(inputs=list(image),
                data_samples=[SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
                              for _ in range(image.shape[0])])
    with torch.no_grad(), _inference_mode(segmentor, mode):
        out = segmentor.test_step(data)
    return (torch.stack([o.seg_logits.data for o in out]),
            torch.stack([o.pred_sem_seg.data for o in out]).long())


def mmseg_seg_logits(segmentor, image, mode=None):
    """``seg_logits`` of :func:`mmseg_results`."""
    return mmseg_results(segmentor, image, mode)[0]


def binary_threshold(segmentor):
    """``decode_head.threshold`` of a one-channel segmentor, else None."""
    if getattr(segmentor, 'out_channels', None) != 1:
        return None
    return float(segmentor.decode_head.threshold)


def decisive_pixels(ref_logits, threshold=None, atol=PARITY_ATOL):
    """N x H x W mask of the pixels whose prediction no difference within ``atol`` can
    change: with classes, a top-2 margin above ``2 * atol`` (each of the two logits may
    move by ``atol``); with one channel (``threshold`` given), a sigmoid further than
    ``atol`` from the threshold."""
    ref = np.asarray(ref_logits, dtype=np.float64)
    if threshold is not None:
        return np.abs(ref[:, 0] - threshold) > atol
    top2 = np.sort(ref, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) > 2 * atol


def compare(got, ref, threshold=None, atol=PARITY_ATOL):
    """``got``/``ref``: (seg_logits, pred_sem_seg) numpy pairs of the same shapes.

    Returns:
        dict(max_abs_diff, agreement: prediction agreement on the decisive pixels,
        decisive: their fraction, agreement_all: on all pixels, shape)
    """
    decisive = decisive_pixels(ref[0], threshold, atol)
    same = got[1][:, 0] == ref[1][:, 0]
    return dict(max_abs_diff=float(np.abs(got[0] - ref[0]).max()),
                agreement=float(same[decisive].mean()) if decisive.any() else 1.0,
                decisive=float(decisive.mean()), agreement_all=float(same.mean()),
                shape=tuple(ref[0].shape))


def run_graph(onnx_file, image):
    """onnxruntime's (seg_logits, pred_sem_seg) for ``image``, by output name."""
    sess = ort_session(onnx_file)
    names = [o.name for o in sess.get_outputs()]
    if not set(OUTPUT_NAMES) <= set(names):
        raise OnnxParityError(f'{onnx_file}: outputs {names}, expected {list(OUTPUT_NAMES)} '
                              '(a graph from an older export? export it again)')
    try:
        out = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: image.numpy().astype(np.float32)})
    except Exception as e:  # noqa: BLE001  onnxruntime's own error types
        text = str(e).strip().splitlines()
        raise OnnxParityError(f'onnxruntime cannot run {onnx_file} on a {tuple(image.shape)} '
                              f'input: {text[0] if text else type(e).__name__}') from e
    return tuple(out)


def describe(result, atol=PARITY_ATOL):
    """One line: the max difference and the margin-aware agreement of :func:`compare`."""
    return (f'max |onnxruntime - test_step| = {result["max_abs_diff"]:.3g}, prediction '
            f'agreement {result["agreement"] * 100:.4f}% of the {result["decisive"] * 100:.2f}% '
            f'pixels decided by more than the tolerance {atol:g} '
            f'({result["agreement_all"] * 100:.4f}% of all pixels)')


def check_parity(segmentor, onnx_file, image, atol=PARITY_ATOL, mode=None):
    """Runs onnxruntime and MMSeg's ``test_step`` on the same raw image batch.

    ``mode``: the inference the graph does (default the segmentor's). A whole-image
    graph of a slide segmentor is compared with whole-image ``test_step``, and its
    difference from the slide ``test_step`` is stated (``vs_slide``), not failed.

    Returns:
        dict of :func:`compare` (plus ``vs_slide``); raises :class:`OnnxParityError`
        above ``atol`` or on a decisive pixel predicted differently.
    """
    threshold = binary_threshold(segmentor)
    got = run_graph(onnx_file, image)
    ref = tuple(t.numpy() for t in mmseg_results(segmentor, image, mode))
    if got[0].shape != ref[0].shape or got[1].shape != ref[1].shape:
        raise OnnxParityError(f'{onnx_file}: onnxruntime gives {got[0].shape} and '
                              f'{got[1].shape}, test_step {ref[0].shape} and {ref[1].shape}')
    result = compare(got, ref, threshold, atol)
    msg = f'ONNX parity {onnx_file} at {tuple(image.shape)}: {describe(result, atol)}'
    print_log(msg, logger='current')
    if mode == 'whole' and inference_mode(segmentor) == 'slide':
        slide = tuple(t.numpy() for t in mmseg_results(segmentor, image))
        result['vs_slide'] = compare(got, slide, threshold, atol)
        print_log(f'ONNX parity: the whole-image graph vs test_step\'s slide inference: '
                  f'{describe(result["vs_slide"], atol)} (stated, not checked)', logger='current')
    if not result['max_abs_diff'] <= atol or result['agreement'] < 1:
        raise OnnxParityError(f'{msg}: above the tolerance {atol:g}')
    return result
