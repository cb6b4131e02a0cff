from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .synthetic.rooms import CLASSES, PALETTE


@DATASETS.register_module()
class SyntheticScenesDataset(BaseSegDataset):
    """The synthetic original domain (rooms, 7 classes) written by
    ``tools/generate_synthetic.py``: ``img_dir/{split}`` and ``ann_dir/{split}``."""

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, img_suffix='.png', seg_map_suffix='.png', **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
