"""The runner of DFSS configs: MMEngine's ``Runner`` that first gives every dataset the
distiller's teacher (``runner_type = 'DFSSRunner'``; MMSeg's tools/train.py builds it
through the ``RUNNERS`` registry)."""
import copy

from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from ..core.shared_teacher import resolve_shared


@RUNNERS.register_module()
class DFSSRunner(Runner):
    """``Runner.from_cfg`` after :func:`~mmseg_dfss.core.shared_teacher.resolve_shared`:
    the ADS wrapper, the held-out set and teacher-labelled validation take the
    teacher named once in ``model`` (after ``--cfg-options``)."""

    @classmethod
    def from_cfg(cls, cfg):
        cfg = resolve_shared(copy.deepcopy(cfg))
        return super().from_cfg(cfg)
