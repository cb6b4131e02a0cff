"""mmseg-dfss: DFSS data-free distillation for semantic segmentation (MMSeg 1.x plugin).

Importing the package registers every component in the mmseg registries
(DATASETS, MODELS, HOOKS, TRANSFORMS) and allow-lists MMEngine's checkpoint types
for ``torch.load`` (see :mod:`mmseg_dfss.core.safe_load`).
"""
from .core import register_checkpoint_safe_globals
from .version import __version__

register_checkpoint_safe_globals()

from . import datasets, engine, models  # noqa: E402,F401  (registration)

__all__ = ['__version__']
