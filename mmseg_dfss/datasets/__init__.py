from .synthetic_pool import SyntheticPoolDataset
from .synthetic_scenes import SyntheticScenesDataset
from .unlabeled_image import UnlabeledImageDataset

__all__ = ['SyntheticScenesDataset', 'SyntheticPoolDataset', 'UnlabeledImageDataset']
