"""Static INT8 quantization of an exported segmentor graph, and its parity with FP32.

Built on ``onnxruntime.quantization`` (``quant_pre_process``, ``quantize_static`` in
the QDQ format, per-channel weights); no quantizer of our own. The graph is the one
:mod:`mmseg_dfss.models.onnx_export` writes: input ``image`` (raw 0-255 BGR, the
normalisation inside the graph), output ``seg_logits``. Calibration inputs are what
that graph takes: an image read as MMSeg's ``LoadImageFromFile`` reads it (BGR),
resized to the graph's input size (``mmcv.imresize``, bilinear: MMSeg's ``Resize``
with ``keep_ratio=False``), as float32 ``1 x 3 x H x W``.

The settings (:data:`DEFAULT_SETTINGS`) and why: docs/deploy.md, "Which settings"
(``benchmarks/int8_calibration.py --sweep`` measures each one changed alone). Parity is
the argmax agreement of the INT8 and FP32 graphs over the pixels of check images never
used to calibrate.
"""
import os
import os.path as osp
import tempfile
import time

import numpy as np
from mmengine.logging import print_log

from .onnx_export import ort_session

DEFAULT_NUM = 200
DEFAULT_MIN_AGREEMENT = 0.95
# onnxruntime's U8S8 QDQ for x86 with VNNI; docs/deploy.md, "Which settings"
DEFAULT_SETTINGS = dict(activation_type='QUInt8', weight_type='QInt8', per_channel=True,
                        reduce_range=False, calibrate_method='MinMax', pre_process=True,
                        fp32_tail=True)
# ops between the last Conv and the graph output that only resample, crop or squash logits
TAIL_OPS = ('Resize', 'Slice', 'Sigmoid', 'Softmax', 'Identity', 'Cast')


class QuantizationError(RuntimeError):
    """The graph cannot be quantized as asked (input size, no usable images)."""


def _ort_quant():
    try:
        from onnxruntime import quantization
    except ImportError as e:
        raise ImportError('INT8 quantization needs onnxruntime: pip install '
                          '"mmseg-dfss[deploy]" (or pip install onnx onnxruntime)') from e
    return quantization


def graph_input(onnx_file):
    """``(name, (H, W))`` of the graph's image input; ``H``/``W`` are None when dynamic."""
    import onnx
    model = onnx.load(onnx_file, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise QuantizationError(f'{onnx_file}: expected one image input, found '
                                f'{[i.name for i in inputs]}')
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise QuantizationError(f'{onnx_file}: input {inputs[0].name!r} has {len(dims)} '
                                'dimensions, expected N x 3 x H x W')
    hw = tuple(d.dim_value if d.HasField('dim_value') else None for d in dims[2:])
    return inputs[0].name, hw


def input_shape(onnx_file, shape=None):
    """The (H, W) images are resized to: the graph's static size, else ``shape``."""
    name, hw = graph_input(onnx_file)
    if None in hw:
        if shape is None:
            raise QuantizationError(f'{onnx_file}: input {name!r} has a dynamic height/width: '
                                    'give --shape H W (the size the student is run at)')
        return tuple(int(s) for s in shape)
    if shape is not None and tuple(shape) != hw:
        raise QuantizationError(f'{onnx_file}: input {name!r} is {hw[0]}x{hw[1]}; --shape '
                                f'{shape[0]} {shape[1]} does not match it (leave it out)')
    return hw


def read_graph_image(path, shape):
    """Raw BGR 0-255 float32 ``1 x 3 x H x W`` of an image file, resized to ``shape``.
    Raises ``OSError``/``ValueError`` for a file that cannot be read as an image."""
    import mmcv
    from mmengine.fileio import get
    img = mmcv.imfrombytes(get(path), flag='color', backend='cv2')
    if img is None:
        raise ValueError('not a decodable image')
    h, w = shape
    if img.shape[:2] != (h, w):
        img = mmcv.imresize(img, (w, h), interpolation='bilinear')
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)


class ImageReader:
    """Graph inputs of image files, in order; an unreadable file is counted in
    ``skipped`` (path, reason), logged and left out."""

    def __init__(self, paths, shape, what='calibration'):
        self.paths, self.shape, self.what = list(paths), tuple(shape), what
        self.skipped, self.used = [], 0

    def __iter__(self):
        return (x for _, x in self.items())

    def items(self):
        """``(path, input)`` of each readable image."""
        for path in self.paths:
            try:
                x = read_graph_image(path, self.shape)
            except (OSError, ValueError) as e:
                self.skipped.append((path, f'{type(e).__name__}: {e}'))
                print_log(f'INT8 {self.what}: skipping unreadable image {path!r}: '
                          f'{type(e).__name__}: {e}', logger='current', level=30)
                continue
            self.used += 1
            yield path, x

    def summary(self):
        return (f'{self.used} {self.what} images used, {len(self.skipped)} unreadable '
                'skipped')


def _calibration_reader(images, input_name):
    """An ``onnxruntime`` ``CalibrationDataReader`` over an :class:`ImageReader`."""
    base = _ort_quant().CalibrationDataReader

    class Reader(base):

        def __init__(self):
            self.it = iter(images)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {input_name: x}

    return Reader()


def output_tail(model):
    """Names of the nodes from the last ``Conv`` (the classifier) to the graph output
    through :data:`TAIL_OPS` only (the final logit resize), output side first."""
    producer = {o: n for n in model.graph.node for o in n.output}
    names, node = [], producer.get(model.graph.output[0].name)
    while node is not None and node.op_type in TAIL_OPS:
        names.append(node.name)
        node = producer.get(node.input[0])
    if node is not None and node.op_type == 'Conv':
        names.append(node.name)
    return names


def _settings(settings):
    q = _ort_quant()
    s = dict(DEFAULT_SETTINGS, **(settings or {}))
    unknown = set(s) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f'unknown INT8 settings {sorted(unknown)}; known: '
                         f'{sorted(DEFAULT_SETTINGS)}')
    try:
        types = {k: getattr(q.QuantType, s[k]) for k in ('activation_type', 'weight_type')}
        method = getattr(q.CalibrationMethod, s['calibrate_method'])
    except AttributeError as e:
        raise ValueError(f'INT8 settings {s}: {e}') from e
    return s, types, method


def quantize_int8(fp32_file, out_file, calibration, shape=None, settings=None):
    """Writes the INT8 (QDQ) graph of ``fp32_file`` to ``out_file``, calibrated on the
    image files ``calibration``.

    Args:
        shape: (H, W) to resize images to; needed only when the graph's size is dynamic.
        settings: overrides of :data:`DEFAULT_SETTINGS`.

    Returns:
        dict(out, shape, settings, fp32_nodes, calibration_used, calibration_skipped,
        seconds).
    """
    q = _ort_quant()
    import onnx
    if osp.abspath(out_file) == osp.abspath(fp32_file):
        raise ValueError(f'--out {out_file!r} is the FP32 input file: name another file')
    shape = input_shape(fp32_file, shape)
    s, types, method = _settings(settings)
    input_name = graph_input(fp32_file)[0]
    t0 = time.perf_counter()
    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='int8-', dir=out_dir) as tmp:
        src = fp32_file
        if s['pre_process']:
            src = osp.join(tmp, 'pre.onnx')
            q.quant_pre_process(fp32_file, src)
        tail = output_tail(onnx.load(src, load_external_data=False)) if s['fp32_tail'] else []
        if tail:
            print_log(f'INT8: kept in FP32 (the logits path to the output): {", ".join(tail)}',
                      logger='current')
        images = ImageReader(calibration, shape)
        tmp_out = osp.join(tmp, 'int8.onnx')
        try:
            q.quantize_static(src, tmp_out, _calibration_reader(images, input_name),
                              quant_format=q.QuantFormat.QDQ, per_channel=s['per_channel'],
                              reduce_range=s['reduce_range'], nodes_to_exclude=tail,
                              calibrate_method=method, **types)
        except ValueError as e:
            if images.used == 0:
                raise QuantizationError(
                    f'no calibration image could be read ({len(images.skipped)} unreadable, '
                    f'e.g. {images.skipped[:3]})') from e
            raise
        print_log(f'INT8 calibration: {images.summary()}', logger='current')
        os.replace(tmp_out, out_file)
    return dict(out=out_file, shape=shape, settings=s, fp32_nodes=tail,
                calibration_used=images.used, calibration_skipped=images.skipped,
                seconds=time.perf_counter() - t0)


def predictions(onnx_file, images, shape, threads=None):
    """``{path: H x W argmax}`` of a graph over image files (unreadable ones skipped
    and counted in the returned :class:`ImageReader`)."""
    sess = ort_session(onnx_file, threads)
    name = sess.get_inputs()[0].name
    reader = ImageReader(images, shape, what='check')
    out = {}
    for path, x in reader.items():
        logits = sess.run(None, {name: x})[0]
        out[path] = logits[0].argmax(0) if logits.shape[1] > 1 else logits[0, 0] > 0.5
    return out, reader


def argmax_agreement(fp32_file, int8_file, images, shape=None):
    """Share of the check images' pixels whose INT8 argmax equals the FP32 argmax.

    Returns:
        dict(agreement, pixels, images, skipped).
    """
    shape = input_shape(fp32_file, shape)
    ref, reader = predictions(fp32_file, images, shape)
    if not ref:
        raise QuantizationError(f'no check image could be read ({len(reader.skipped)} '
                                f'unreadable, e.g. {reader.skipped[:3]})')
    got, _ = predictions(int8_file, list(ref), shape)
    same = sum(int((got[p] == ref[p]).sum()) for p in ref)
    pixels = sum(int(ref[p].size) for p in ref)
    return dict(agreement=same / pixels, pixels=pixels, images=len(ref),
                skipped=reader.skipped)


def quantize_and_check(fp32_file, out_file, calibration, check, shape=None, settings=None,
                       min_agreement=DEFAULT_MIN_AGREEMENT):
    """:func:`quantize_int8` then :func:`argmax_agreement` on ``check``; the result's
    ``passed`` says whether the agreement reaches ``min_agreement``. What
    ``tools/quantize_onnx.py`` runs (and a one-command pipeline can call)."""
    overlap = set(map(osp.abspath, calibration)) & set(map(osp.abspath, check))
    if overlap:
        raise ValueError(f'{len(overlap)} check image(s) also calibrate, e.g. '
                         f'{sorted(overlap)[:3]}: the parity check needs images never used '
                         'to calibrate')
    result = quantize_int8(fp32_file, out_file, calibration, shape, settings)
    parity = argmax_agreement(fp32_file, out_file, check, result['shape'])
    result.update(parity=parity, passed=parity['agreement'] >= min_agreement,
                  min_agreement=min_agreement)
    print_log(f'INT8 parity: argmax agreement with FP32 {parity["agreement"] * 100:.2f}% of '
              f'{parity["pixels"]} pixels ({parity["images"]} check images, '
              f'{len(parity["skipped"])} unreadable skipped); minimum '
              f'{min_agreement * 100:.2f}%', logger='current')
    return result


__all__ = ['DEFAULT_NUM', 'DEFAULT_MIN_AGREEMENT', 'DEFAULT_SETTINGS', 'QuantizationError',
           'graph_input', 'input_shape', 'read_graph_image', 'ImageReader', 'output_tail',
           'quantize_int8', 'predictions', 'argmax_agreement', 'quantize_and_check']
