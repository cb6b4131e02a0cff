"""mmseg-dfss: DFSS data-free distillation for semantic segmentation (MMSeg 1.x plugin).

Importing the package checks that one supported OpenMMLab line is installed
(:mod:`mmseg_dfss.utils.stack`), lets ``mmseg::`` config bases resolve on it, registers
every component in the mmseg registries (DATASETS, MODELS, HOOKS, TRANSFORMS) and
makes every checkpoint MMEngine's ``CheckpointLoader`` reads go through the project's
restricted ``torch.load(weights_only=True)`` (see :mod:`mmseg_dfss.core.safe_load`).
"""
from .onedl_notice import import_mmseg_datasets_quietly
from .utils.stack import check_stack, map_mmseg_scope

STACK = check_stack()
map_mmseg_scope(STACK)
import_mmseg_datasets_quietly()

from .core import register_checkpoint_safe_globals  # noqa: E402
from .version import __version__  # noqa: E402

register_checkpoint_safe_globals()

from . import datasets, engine, models  # noqa: E402,F401  (registration)

__all__ = ['__version__', 'STACK']
