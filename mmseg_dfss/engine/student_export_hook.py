"""Writes the distilled student as a plain MMSeg checkpoint + config after training."""
import os.path as osp

from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ..models.student_export import export_student
from .wdpd_hook import unwrap


@HOOKS.register_module()
class StudentExportHook(Hook):
    """After training, exports ``model.student`` of a ``DataFreeDistiller`` to
    ``out_dir`` (default ``<work_dir>/student``): ``student.pth`` and
    ``student_config.py``, loadable by MMSeg's ``tools/test.py`` and
    ``mmseg.apis.init_model`` without this plugin (see
    :mod:`mmseg_dfss.models.student_export`).

    ``onnx=True`` also writes ``student.onnx`` there, from those two files, through
    the code of ``tools/export_onnx.py`` (:mod:`mmseg_dfss.models.onnx_export`):
    raw BGR 0-255 input, preprocessing in the graph, checked against MMSeg's
    ``test_step`` (a parity failure raises after the ``.pth`` is written).
    ``onnx_shape`` (H, W) is its input size (default: the config's test size);
    ``onnx_dynamic`` makes batch, height and width dynamic. Needs the ``deploy``
    extra (onnx, onnxruntime).
    """

    priority = 'LOWEST'

    def __init__(self, out_dir=None, onnx=False, onnx_shape=None, onnx_dynamic=False):
        self.out_dir = out_dir
        self.onnx = onnx
        self.onnx_shape = onnx_shape
        self.onnx_dynamic = onnx_dynamic

    @master_only
    def after_train(self, runner):
        model = unwrap(runner.model)
        if not hasattr(model, 'student'):
            raise TypeError(f'StudentExportHook: the model ({type(model).__name__}) has no '
                            'student; use it with a DataFreeDistiller')
        out_dir = self.out_dir or osp.join(runner.work_dir, 'student')
        dataset = getattr(runner.train_dataloader, 'dataset', None)
        ckpt_path, cfg_path = export_student(
            runner.cfg, model.student.state_dict(), out_dir,
            dataset_meta=getattr(dataset, 'metainfo', None),
            source=f'{runner.work_dir} (iteration {runner.iter})')
        if self.onnx:
            from ..models.onnx_export import ONNX_NAME, export_and_check
            export_and_check(cfg_path, ckpt_path, osp.join(out_dir, ONNX_NAME),
                             shape=self.onnx_shape, dynamic=self.onnx_dynamic)
