"""ONNX export of an MMSeg segmentor, with a parity check against MMSeg's ``test_step``.

Shared by ``tools/export_onnx.py`` and :class:`~mmseg_dfss.engine.StudentExportHook`
(``onnx=True``). The graph a deployment runtime gets:

- **input** ``image``: float32 ``N x 3 x H x W``, raw 0-255 pixels in the channel order
  MMSeg's ``LoadImageFromFile`` gives (BGR). The config's ``data_preprocessor``
  (``bgr_to_rgb``/``rgb_to_bgr`` channel swap, ``mean``/``std``) is inside the graph.
- **output** ``seg_logits``: ``N x classes x H x W`` at the input size, what
  ``test_step`` puts in ``seg_logits`` for whole-image inference (a one-channel
  binary head: its sigmoid, as ``test_step`` gives).

A ``slide`` ``test_cfg`` is not in the graph: the exported graph is one whole-image
forward of the given size (the caller tiles, or exports at the crop size).
SyncBN is reverted to BN and auxiliary heads are left out (they are never used at
inference). An op that does not export is named with the module that runs it
(:class:`OnnxExportError`).

``onnx``/``onnxruntime`` (the ``deploy`` extra) are imported here lazily:
``import mmseg_dfss`` does not need them.
"""
import copy
import io
import os
import os.path as osp
import time
import warnings

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log

from ..core.teacher import checkpoint_state_dict, load_model_config
from .data_free_distiller import drop_auxiliary_head

OPSET = 17
ONNX_NAME = 'student.onnx'  # what StudentExportHook(onnx=True) writes
INPUT_NAME = 'image'
OUTPUT_NAME = 'seg_logits'
PARITY_ATOL = 1e-3
NORM_KEYS = ('mean', 'std', 'bgr_to_rgb', 'rgb_to_bgr')


class OnnxExportError(RuntimeError):
    """An export failure, naming the module (dotted path in the segmentor) that runs
    the op which does not export (``module`` / ``module_type``)."""

    def __init__(self, message, module=None, module_type=None):
        super().__init__(message)
        self.module = module
        self.module_type = module_type


class OnnxParityError(RuntimeError):
    """onnxruntime's logits differ from PyTorch's by more than the tolerance."""


def _need(package):
    try:
        return __import__(package)
    except ImportError as e:
        raise ImportError(f'ONNX export needs {package!r}: pip install "mmseg-dfss[deploy]" '
                          f'(or pip install onnx onnxruntime)') from e


class ExportableSegmentor(nn.Module):
    """Raw BGR 0-255 ``N x 3 x H x W`` -> ``seg_logits`` ``N x C x H x W``: the
    data_preprocessor's channel swap and normalisation, then the segmentor's own
    ``encode_decode`` (whole-image inference; heads resize to the input size)."""

    def __init__(self, segmentor, preprocessor=None):
        super().__init__()
        self.segmentor = segmentor
        preprocessor = dict(preprocessor or {})
        if preprocessor.get('bgr_to_rgb') and preprocessor.get('rgb_to_bgr'):
            raise ValueError('data_preprocessor: bgr_to_rgb and rgb_to_bgr cannot both be True')
        self.swap = bool(preprocessor.get('bgr_to_rgb') or preprocessor.get('rgb_to_bgr'))
        mean, std = preprocessor.get('mean'), preprocessor.get('std')
        self.normalise = mean is not None
        if self.normalise:
            if std is None or len(mean) != len(std):
                raise ValueError(f'data_preprocessor: mean {mean!r} and std {std!r} must be '
                                 'given together, one value per channel')
            self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                                 persistent=False)
            self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                                 persistent=False)

    def forward(self, image):
        x = image
        if self.swap:
            x = x[:, [2, 1, 0], ...]
        if self.normalise:
            x = (x - self.mean) / self.std
        metas = [dict(img_shape=x.shape[2:], ori_shape=x.shape[2:], pad_shape=x.shape[2:])
                 ] * x.shape[0]
        logits = self.segmentor.encode_decode(x, metas)
        if logits.shape[1] == 1:  # binary head: test_step's seg_logits are its sigmoid
            logits = logits.sigmoid()
        return logits


def preprocessor_cfg(cfg, segmentor=None):
    """The ``data_preprocessor`` dict a config tests with (``model.data_preprocessor``,
    else the top-level one), read from the config, not the built module's internals."""
    model = cfg.get('model', cfg)
    dp = model.get('data_preprocessor') or cfg.get('data_preprocessor')
    if dp is None and segmentor is not None:
        print_log('ONNX export: the config has no data_preprocessor; the graph does no '
                  'channel swap or normalisation', logger='current', level=30)
    return {k: copy.deepcopy(dp.get(k)) for k in NORM_KEYS} if dp else {}


def load_segmentor_weights(segmentor, checkpoint):
    """Loads ``checkpoint`` (path or URL, weights_only through the project's safe
    loading) strictly, except ``auxiliary_head.*`` weights, which are left out with
    the head (a zoo checkpoint has them, an exported student has none)."""
    state = checkpoint_state_dict(checkpoint, 'segmentor checkpoint')
    aux = [k for k in state if k.startswith('auxiliary_head.')]
    state = {k: v for k, v in state.items() if not k.startswith('auxiliary_head.')}
    if aux:
        print_log(f'ONNX export: {len(aux)} auxiliary_head weights of {checkpoint} left out '
                  '(not used at inference)', logger='current')
    own = segmentor.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state)
                    if getattr(state[k], 'shape', None) != own[k].shape)
    if missing or unexpected or shapes:
        raise KeyError(f'checkpoint {checkpoint!r} does not match the config: missing keys '
                       f'{missing[:10]}, unexpected keys {unexpected[:10]}, shape mismatches '
                       f'{shapes[:10]}' + (' (a DataFreeDistiller checkpoint? export the '
                                           'student with tools/export_student.py first)'
                                           if any(k.startswith('student.') for k in unexpected)
                                           else ''))
    segmentor.load_state_dict(state, strict=True)


def build_exportable(config, checkpoint=None):
    """Builds the segmentor of ``config`` (a path or ``Config``; its ``model``) on CPU,
    loads ``checkpoint`` strictly with the project's safe loading, reverts SyncBN,
    drops auxiliary heads and wraps it as :class:`ExportableSegmentor`.

    Returns:
        (wrapper, segmentor, Config)
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    if 'model' not in cfg:
        raise KeyError(f'config {getattr(cfg, "filename", config)!r} has no `model` entry')
    model_cfg = load_model_config(cfg.model)
    if 'data_preprocessor' not in model_cfg and cfg.get('data_preprocessor') is not None:
        model_cfg.data_preprocessor = copy.deepcopy(cfg.data_preprocessor)
    if model_cfg.get('type') == 'DataFreeDistiller':
        raise ValueError('ONNX export takes a segmentor config; this is a DataFreeDistiller '
                         'config: export the student first (tools/export_student.py, or '
                         'StudentExportHook) and give its student_config.py + student.pth')
    model_cfg.pop('pretrained', None)  # weights come from the checkpoint (no download)
    backbone = model_cfg.get('backbone')
    if isinstance(backbone, dict) and (backbone.get('init_cfg') or {}).get('type') == 'Pretrained':
        backbone.pop('init_cfg')
    model_cfg = drop_auxiliary_head(model_cfg, notice=False)  # never run at inference
    with DefaultScope.overwrite_default_scope('mmseg'):  # its data_preprocessor too
        segmentor = revert_sync_batchnorm(MODELS.build(model_cfg))
    if not hasattr(segmentor, 'encode_decode'):
        raise TypeError(f'ONNX export: {type(segmentor).__name__} has no encode_decode '
                        '(an MMSeg EncoderDecoder-like segmentor is needed)')
    if checkpoint is not None:
        load_segmentor_weights(segmentor, checkpoint)
    else:
        segmentor.init_weights()
        print_log('ONNX export: no checkpoint, random weights', logger='current', level=30)
    mode = (model_cfg.get('test_cfg') or {}).get('mode', 'whole')
    if mode != 'whole':
        print_log(f"ONNX export: test_cfg.mode={mode!r} is not in the graph; it is a "
                  'whole-image forward of the exported size (tile the image yourself, or '
                  'export at the crop size)', logger='current', level=30)
    segmentor.eval()
    wrapper = ExportableSegmentor(segmentor, preprocessor_cfg(model_cfg, segmentor)).eval()
    return wrapper, segmentor, cfg


def config_test_shape(cfg, default=(512, 512)):
    """(H, W) one test forward of a config sees, when the config says it: the
    ``test_cfg`` crop for ``slide`` inference, else the ``Resize`` scale of the test
    pipeline (MMCV scales are (w, h); exact when images have that aspect, as
    Cityscapes' 2048x1024 does), else ``crop_size``, else ``default``."""
    model = cfg.get('model') or {}
    test_cfg = model.get('test_cfg') or {}
    if test_cfg.get('mode') == 'slide' and test_cfg.get('crop_size'):
        return tuple(test_cfg['crop_size'])
    pipeline = cfg.get('test_pipeline') or ((cfg.get('test_dataloader') or {}).get(
        'dataset') or {}).get('pipeline') or []
    for t in pipeline:
        if t.get('type') == 'Resize' and isinstance(t.get('scale'), (list, tuple)):
            w, h = t['scale']
            return int(h), int(w)
    crop = cfg.get('crop_size')
    return tuple(crop) if crop else tuple(default)


# ---------------------------------------------------------------- naming a failure
class _ModuleTracker:
    """Forward hooks keeping the stack of running modules (the innermost one when an
    exception escapes a forward stays on top) and the first inputs of each module."""

    def __init__(self, root, record_inputs=False):
        self.stack, self.inputs, self.handles = [], {}, []
        names = {m: n for n, m in root.named_modules()}
        self.names = names
        for module, name in names.items():
            self.handles.append(module.register_forward_pre_hook(
                self._pre(name, record_inputs), with_kwargs=True))
            self.handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, name, record):
        def hook(module, args, kwargs):
            self.stack.append(name)
            if record and name not in self.inputs:
                self.inputs[name] = (args, kwargs)
        return hook

    def _post(self, name):
        def hook(module, args, output):
            if self.stack and self.stack[-1] == name:
                self.stack.pop()
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _try_export(module, args, kwargs, opset, dynamo):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(module, args, buf, kwargs=kwargs or None, opset_version=opset,
                          dynamo=dynamo)


def _culprit(wrapper, example, error, opset, dynamo):
    """The deepest module whose own export fails the way the whole export did: the
    forward that was running when it was raised (tracing-time errors), else found by
    exporting submodules on the inputs recorded in one eager forward (errors while
    converting the traced graph, e.g. an op with no ONNX symbolic)."""
    tracker = _ModuleTracker(wrapper, record_inputs=True)
    try:
        with torch.no_grad():
            wrapper(example)
    except Exception:  # noqa: BLE001  the eager forward itself fails in a module
        stack = list(tracker.stack)
        tracker.close()
        return stack[-1] if stack else None
    finally:
        tracker.close()
    inputs, names = tracker.inputs, {n: m for m, n in tracker.names.items()}

    def called(parent):
        """The nearest descendants of ``parent`` that ran through ``__call__``
        (a segmentor's ``encode_decode`` is called as a method: look inside)."""
        for child, _ in names[parent].named_children():
            child = f'{parent}.{child}' if parent else child
            if child in inputs:
                yield child
            else:
                yield from called(child)

    wanted = _first_line(error)
    current = ''
    while True:
        found = None
        for child in called(current):
            args, kwargs = inputs[child]
            try:
                _try_export(names[child], tuple(args), kwargs, opset, dynamo)
            except Exception as e:  # noqa: BLE001
                if _first_line(e) == wanted:
                    found = child
                    break
        if found is None:
            return current or None
        current = found


def export_onnx(wrapper, out_file, shape=(512, 512), dynamic=False, opset=OPSET, dynamo=False):
    """Exports ``wrapper`` (:class:`ExportableSegmentor`) to ``out_file``.

    ``dynamo=False``: the TorchScript-tracing exporter (the default here; see
    docs/deploy.md for why). ``dynamic``: batch, height and width are free axes.
    Any failure raises :class:`OnnxExportError` naming the module.
    """
    _need('onnx')
    h, w = shape
    example = torch.randint(0, 256, (1, 3, h, w), generator=torch.Generator().manual_seed(0)
                            ).float()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    kwargs = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                  dynamo=dynamo)
    if dynamic:
        axes = {0: 'batch', 2: 'height', 3: 'width'}
        if dynamo:
            kwargs['dynamic_shapes'] = {'image': {k: torch.export.Dim.AUTO for k in axes}}
        else:
            kwargs['dynamic_axes'] = {INPUT_NAME: axes, OUTPUT_NAME: axes}
    tracker = _ModuleTracker(wrapper)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
            torch.onnx.export(wrapper, (example, ), out_file, **kwargs)
    except Exception as e:  # noqa: BLE001  named below, with the module that ran the op
        stack = list(tracker.stack)
        tracker.close()
        name = stack[-1] if stack else _culprit(wrapper, example, e, opset, dynamo)
        module = dict(wrapper.named_modules()).get(name) if name else None
        where = (f'in module {name!r} ({type(module).__name__})' if name
                 else 'outside any submodule')
        if osp.exists(out_file):
            os.remove(out_file)
        raise OnnxExportError(f'ONNX export (opset {opset}) failed {where}: {_first_line(e)}',
                              module=name, module_type=type(module).__name__ if module else None
                              ) from e
    finally:
        tracker.close()
    import onnx
    onnx.checker.check_model(out_file)
    return out_file


def mmseg_seg_logits(segmentor, image):
    """MMSeg's own ``test_step`` (the segmentor's data_preprocessor included) on raw
    BGR ``image`` (N x 3 x H x W, 0-255): ``seg_logits`` of each sample, stacked
    (N x C x H x W)."""
    from mmseg.structures import SegDataSample
    h, w = image.shape[2:]
    data = dict(inputs=list(image),
                data_samples=[SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
                              for _ in range(image.shape[0])])
    with torch.no_grad():
        out = segmentor.test_step(data)
    return torch.stack([o.seg_logits.data for o in out])


def ort_session(onnx_file, threads=None):
    ort = _need('onnxruntime')
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_file, opts, providers=['CPUExecutionProvider'])


def check_parity(segmentor, onnx_file, image, atol=PARITY_ATOL):
    """Runs onnxruntime and MMSeg's ``test_step`` on the same raw image batch.

    Returns:
        dict(max_abs_diff, argmax_agreement, shape); raises
        :class:`OnnxParityError` when the max abs logit difference exceeds ``atol``.
    """
    import numpy as np
    sess = ort_session(onnx_file)
    try:
        ort_out = sess.run(None, {sess.get_inputs()[0].name: image.numpy().astype(np.float32)})[0]
    except Exception as e:  # noqa: BLE001  onnxruntime's own error types
        raise OnnxParityError(f'onnxruntime cannot run {onnx_file} on a {tuple(image.shape)} '
                              f'input: {_first_line(e)}') from e
    ref = mmseg_seg_logits(segmentor, image).numpy()
    if ort_out.shape != ref.shape:
        raise OnnxParityError(f'{onnx_file}: onnxruntime gives {ort_out.shape}, test_step '
                              f'{ref.shape}')
    diff = float(np.abs(ort_out - ref).max())
    agree = float((ort_out.argmax(1) == ref.argmax(1)).mean()) if ref.shape[1] > 1 else float(
        ((ort_out > 0.5) == (ref > 0.5)).mean())
    result = dict(max_abs_diff=diff, argmax_agreement=agree, shape=tuple(ref.shape))
    msg = (f'ONNX parity {onnx_file} at {tuple(image.shape)}: max |onnxruntime - test_step| '
           f'= {diff:.3g}, argmax agreement {agree * 100:.4f}%')
    print_log(msg, logger='current')
    if not diff <= atol:
        raise OnnxParityError(f'{msg} > {atol:g}')
    return result


def random_image(shape, batch=1, seed=0):
    """A raw BGR 0-255 float batch, as LoadImageFromFile + stacking give."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, *shape), generator=g).float()


def export_and_check(config, checkpoint, out_file, shape=None, dynamic=False, opset=OPSET,
                     dynamo=False, check_shapes=None, atol=PARITY_ATOL):
    """Export ``config`` + ``checkpoint`` to ``out_file`` and check parity.

    ``shape`` defaults to the config's test input size. The check runs at ``shape``,
    and for a ``dynamic`` export also at each of ``check_shapes`` (default: one other
    size, batch 2).

    Returns:
        list of the :func:`check_parity` results.
    """
    wrapper, segmentor, cfg = build_exportable(config, checkpoint)
    shape = tuple(shape) if shape else config_test_shape(cfg)
    t0 = time.perf_counter()
    export_onnx(wrapper, out_file, shape, dynamic=dynamic, opset=opset, dynamo=dynamo)
    print_log(f'ONNX export: {out_file} ({"dynamic N, H, W" if dynamic else "static"}, '
              f'input 1x3x{shape[0]}x{shape[1]}, opset {opset}, '
              f'{"dynamo" if dynamo else "TorchScript"} exporter, '
              f'{time.perf_counter() - t0:.1f} s)', logger='current')
    checks = [(shape, 1)]
    if dynamic:
        if check_shapes is None:
            check_shapes = [(shape[0] // 2 + 8, shape[1] * 3 // 4 + 8)]
        checks += [(tuple(s), 2) for s in check_shapes]
    return [check_parity(segmentor, out_file, random_image(s, n, seed=i), atol)
            for i, (s, n) in enumerate(checks)]


__all__ = ['ExportableSegmentor', 'OnnxExportError', 'OnnxParityError', 'build_exportable',
           'export_onnx', 'check_parity', 'export_and_check', 'mmseg_seg_logits',
           'config_test_shape', 'ort_session', 'random_image']
