from .ads_dataset import ADSDataset
from .ads_held_out import ADSHeldOutDataset
from .camvid import CamVidDataset
from .coco_pool import COCOPoolDataset
from .nyuv2 import NYUv2Dataset
from .seeded_infinite_sampler import SeededInfiniteSampler
from .synthetic_pool import SyntheticPoolDataset
from .synthetic_scenes import SyntheticScenesDataset
from .teacher_label_format import LoadTeacherLabel
from .teacher_labeled import TeacherLabeledDataset
from .unlabeled_image import UnlabeledImageDataset

__all__ = ['SyntheticScenesDataset', 'SyntheticPoolDataset', 'UnlabeledImageDataset',
           'NYUv2Dataset', 'CamVidDataset', 'COCOPoolDataset', 'ADSDataset',
           'TeacherLabeledDataset', 'ADSHeldOutDataset', 'SeededInfiniteSampler',
           'LoadTeacherLabel']
