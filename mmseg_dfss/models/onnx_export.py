"""ONNX export of an MMSeg segmentor, with the failure diagnosis and the parity check.

Shared by ``tools/export_onnx.py`` and :class:`~mmseg_dfss.engine.StudentExportHook`
(``onnx=True``). The three parts, each in its own file:

- the graph and its contract: :mod:`.onnx_wrapper` (:class:`ExportableSegmentor`,
  :func:`build_exportable`);
- the export, here: :func:`export_onnx`; an op that does not export is named with the
  module that runs it (:class:`OnnxExportError`), found by tracing the running modules;
- the check against MMSeg's ``test_step``: :mod:`.onnx_parity` (:func:`check_parity`,
  ``PARITY_ATOL``).

:func:`export_and_check` ties them together. The names of all three stay importable
from here (the docs and ``benchmarks/compression.py`` cite this module).
"""
import io
import os
import os.path as osp
import tempfile
import time
import warnings

import torch
from mmengine.logging import print_log

from .onnx_parity import (PARITY_ATOL, OnnxParityError, check_parity, compare,
                          decisive_pixels, mmseg_results, mmseg_seg_logits, ort_session,
                          random_image)
from .onnx_wrapper import (INPUT_NAME, OUTPUT_NAME, OUTPUT_NAMES, ExportableSegmentor,
                           build_exportable, config_test_shape, inference_mode,
                           load_segmentor_weights, preprocessor_cfg, require)

OPSET = 17
ONNX_NAME = 'student.onnx'  # what StudentExportHook(onnx=True) writes
DYNAMO_NEEDS = 'pip install onnxscript (the --dynamo exporter needs it; or leave --dynamo out)'


class OnnxExportError(RuntimeError):
    """An export failure, naming the module (dotted path in the segmentor) that runs
    the op which does not export (``module`` / ``module_type``)."""

    def __init__(self, message, module=None, module_type=None):
        super().__init__(message)
        self.module = module
        self.module_type = module_type


class _ModuleTracker:
    """Forward hooks keeping the stack of running modules (the innermost one when an
    exception escapes a forward stays on top) and the first inputs of each module."""

    def __init__(self, root, record_inputs=False):
        self.stack, self.inputs, self.handles = [], {}, []
        self.names = {m: n for n, m in root.named_modules()}
        for module, name in self.names.items():
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
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(module, args, io.BytesIO(), kwargs=kwargs or None,
                          opset_version=opset, dynamo=dynamo)


def _called_children(modules, inputs, parent):
    """The nearest descendants of ``parent`` that ran through ``__call__`` (a
    segmentor's ``encode_decode`` is called as a method: look inside)."""
    for child, _ in modules[parent].named_children():
        child = f'{parent}.{child}' if parent else child
        if child in inputs:
            yield child
        else:
            yield from _called_children(modules, inputs, child)


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
        return tracker.stack[-1] if tracker.stack else None
    finally:
        tracker.close()
    modules = {n: m for m, n in tracker.names.items()}
    wanted, current = _first_line(error), ''
    while True:
        found = None
        for child in _called_children(modules, tracker.inputs, current):
            args, kwargs = tracker.inputs[child]
            try:
                _try_export(modules[child], tuple(args), kwargs, opset, dynamo)
            except Exception as e:  # noqa: BLE001
                if _first_line(e) == wanted:
                    found = child
                    break
        if found is None:
            return current or None
        current = found


def _export_kwargs(dynamic, opset, dynamo):
    kwargs = dict(input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                  opset_version=opset, dynamo=dynamo)
    if dynamic:
        axes = {0: 'batch', 2: 'height', 3: 'width'}
        if dynamo:
            kwargs['dynamic_shapes'] = {INPUT_NAME: {k: torch.export.Dim.AUTO for k in axes}}
        else:
            kwargs['dynamic_axes'] = {name: axes for name in (INPUT_NAME, *OUTPUT_NAMES)}
    return kwargs


def require_exporter(dynamo=False, check=False):
    """Raises an ``ImportError`` saying what to install when the export (and with
    ``check`` the parity check) cannot run: before any work is done."""
    require('onnx')
    if check:
        require('onnxruntime')
    if dynamo:
        require('onnxscript', DYNAMO_NEEDS)


def export_onnx(wrapper, out_file, shape=(512, 512), dynamic=False, opset=OPSET, dynamo=False):
    """Exports ``wrapper`` (:class:`ExportableSegmentor`) to ``out_file``.

    ``dynamo=False``: the TorchScript-tracing exporter (the default here; see
    docs/deploy.md for why); ``dynamo=True`` needs ``onnxscript``. ``dynamic``: batch,
    height and width are free axes (not for a slide wrapper: its crop grid is fixed at
    export). Any failure of the export raises :class:`OnnxExportError` naming the module.
    The graph is written under a temporary name in the same folder, then moved onto
    ``out_file``: a failed export leaves an existing ``out_file`` as it was.
    """
    require_exporter(dynamo)
    if dynamic and getattr(wrapper, 'mode', 'whole') == 'slide':
        raise ValueError('a slide graph is traced for one input size: export it static, or '
                         "build it with mode='whole' for dynamic axes")
    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f'.{osp.basename(out_file)}.', suffix='.tmp')
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the permissions a plain open() would give, not 0600
    try:
        _trace(wrapper, random_image(tuple(shape)), tmp, dynamic, opset, dynamo)
        write_metadata(tmp, wrapper)
        os.replace(tmp, out_file)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return out_file


def _trace(wrapper, example, out_file, dynamic, opset, dynamo):
    """``torch.onnx.export``; a failure becomes an :class:`OnnxExportError` naming the
    module that ran the op."""
    tracker = _ModuleTracker(wrapper)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
            torch.onnx.export(wrapper, (example, ), out_file,
                              **_export_kwargs(dynamic, opset, dynamo))
    except Exception as e:  # noqa: BLE001  named below, with the module that ran the op
        stack = list(tracker.stack)
        tracker.close()
        raise _named_failure(wrapper, example, e, stack, opset, dynamo) from e
    finally:
        tracker.close()


def write_metadata(out_file, wrapper):
    """Stores in the graph what its caller needs for the steps left to it (the resize of
    ``seg_logits`` back to the original size, then the argmax or the threshold):
    ``align_corners`` (the segmentor's), ``threshold`` (one-channel heads), ``mode``
    (whole or slide), read with onnxruntime's ``get_modelmeta().custom_metadata_map``."""
    import onnx
    model = onnx.load(out_file)
    meta = dict(align_corners=str(bool(getattr(wrapper.segmentor, 'align_corners', False))),
                mode=wrapper.mode, outputs=','.join(OUTPUT_NAMES))
    if wrapper.threshold is not None:
        meta['threshold'] = repr(wrapper.threshold)
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, out_file)


def _named_failure(wrapper, example, error, stack, opset, dynamo):
    """The :class:`OnnxExportError` for ``error``."""
    name = stack[-1] if stack else _culprit(wrapper, example, error, opset, dynamo)
    module = dict(wrapper.named_modules()).get(name) if name else None
    where = f'in module {name!r} ({type(module).__name__})' if name else 'outside any submodule'
    return OnnxExportError(f'ONNX export (opset {opset}) failed {where}: {_first_line(error)}',
                           module=name, module_type=type(module).__name__ if module else None)


def graph_mode(segmentor, dynamic):
    """The inference the graph does: the segmentor's own, except that a dynamic graph
    of a slide segmentor is whole-image (a slide grid is fixed at export)."""
    mode = inference_mode(segmentor)
    if dynamic and mode == 'slide':
        print_log('ONNX export: test_cfg.mode is slide, but a dynamic graph cannot slide (its '
                  'crop grid depends on the size): the graph is whole-image inference, checked '
                  'against whole-image test_step; its difference from slide is stated',
                  logger='current', level=30)
        return 'whole'
    return mode


def export_and_check(config, checkpoint, out_file, shape=None, dynamic=False, opset=OPSET,
                     dynamo=False, check_shapes=None, atol=PARITY_ATOL):
    """Export ``config`` + ``checkpoint`` to ``out_file`` and check parity.

    ``shape`` defaults to the config's test input size. The check runs at ``shape``,
    and for a ``dynamic`` export also at each of ``check_shapes`` (default: one other
    size, batch 2).

    Returns:
        list of the :func:`check_parity` results.
    """
    require_exporter(dynamo, check=True)
    wrapper, segmentor, cfg = build_exportable(config, checkpoint)
    wrapper.mode = graph_mode(segmentor, dynamic)
    shape = tuple(shape) if shape else config_test_shape(cfg)
    t0 = time.perf_counter()
    export_onnx(wrapper, out_file, shape, dynamic=dynamic, opset=opset, dynamo=dynamo)
    print_log(f'ONNX export: {out_file} ({"dynamic N, H, W" if dynamic else "static"}, '
              f'input 1x3x{shape[0]}x{shape[1]}, {wrapper.mode} inference, opset {opset}, '
              f'{"dynamo" if dynamo else "TorchScript"} exporter, '
              f'{time.perf_counter() - t0:.1f} s)', logger='current')
    checks = [(shape, 1)]
    if dynamic:
        if check_shapes is None:
            check_shapes = [(shape[0] // 2 + 8, shape[1] * 3 // 4 + 8)]
        checks += [(tuple(s), 2) for s in check_shapes]
    return [check_parity(segmentor, out_file, random_image(s, n, seed=i), atol, wrapper.mode)
            for i, (s, n) in enumerate(checks)]


__all__ = ['ExportableSegmentor', 'OnnxExportError', 'OnnxParityError', 'build_exportable',
           'export_onnx', 'check_parity', 'export_and_check', 'mmseg_seg_logits',
           'mmseg_results', 'config_test_shape', 'ort_session', 'random_image', 'compare',
           'decisive_pixels', 'load_segmentor_weights', 'write_metadata', 'preprocessor_cfg',
           'graph_mode', 'require_exporter',
           'PARITY_ATOL', 'OPSET', 'ONNX_NAME', 'INPUT_NAME', 'OUTPUT_NAME', 'OUTPUT_NAMES']
