"""mmseg-dfss: DFSS data-free distillation for semantic segmentation (MMSeg 1.x plugin).

Importing the package checks that one supported OpenMMLab line is installed
(:mod:`mmseg_dfss.core.stack`, run first thing in :mod:`mmseg_dfss.core`), lets
``mmseg::`` config bases resolve on it (each package metafile parsed once,
:mod:`mmseg_dfss.core.metafile_reads`), registers every component in the mmseg
registries (DATASETS, MODELS, HOOKS, TRANSFORMS) and makes every checkpoint
MMEngine's ``CheckpointLoader`` reads go through the project's restricted
``torch.load(weights_only=True)`` (see :mod:`mmseg_dfss.core.safe_load`).
"""
from .core import STACK, register_checkpoint_safe_globals
from .core.metafile_reads import memoize_metafile_reads
from .core.stack import map_mmseg_scope
from .version import __version__

map_mmseg_scope(STACK)
memoize_metafile_reads()

register_checkpoint_safe_globals()

from . import datasets, engine, models  # noqa: E402,F401  (registration)

__all__ = ['__version__', 'STACK']
