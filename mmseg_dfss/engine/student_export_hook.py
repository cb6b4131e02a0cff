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
    :mod:`mmseg_dfss.models.student_export`)."""

    priority = 'LOWEST'

    def __init__(self, out_dir=None):
        self.out_dir = out_dir

    @master_only
    def after_train(self, runner):
        model = unwrap(runner.model)
        if not hasattr(model, 'student'):
            raise TypeError(f'StudentExportHook: the model ({type(model).__name__}) has no '
                            'student; use it with a DataFreeDistiller')
        out_dir = self.out_dir or osp.join(runner.work_dir, 'student')
        dataset = getattr(runner.train_dataloader, 'dataset', None)
        export_student(runner.cfg, model.student.state_dict(), out_dir,
                       dataset_meta=getattr(dataset, 'metainfo', None),
                       source=f'{runner.work_dir} (iteration {runner.iter})')
