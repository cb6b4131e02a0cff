from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .layout_utils import paired_files

CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol', 'Fence',
                  'Car', 'Pedestrian', 'Bicyclist')
# SegNet's colours
CAMVID_PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128],
                  [60, 40, 222], [128, 128, 0], [192, 128, 128], [64, 64, 128], [64, 0, 128],
                  [64, 64, 0], [0, 128, 192]]
CAMVID_VOID = 11


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
    """CamVid with 11 classes in SegNet's layout: ``<split>/*.png`` with
    ``<split>annot/*.png`` of the same name (splits train 367, val 101, test 233).

    Label 11 (void) becomes 255 through MMSeg's ``label_map`` (applied by
    LoadAnnotations), composed with any class subset chosen in ``metainfo``.

    Args:
        split: 'train', 'val' or 'test'.
    """

    METAINFO = dict(classes=CAMVID_CLASSES, palette=CAMVID_PALETTE)
    SPLITS = ('train', 'val', 'test')

    def __init__(self, data_root=None, split='train', img_suffix='.png', seg_map_suffix='.png',
                 **kwargs):
        if split not in self.SPLITS:
            raise ValueError(f'CamVidDataset: split must be one of {self.SPLITS}, got {split!r}')
        if not data_root:
            raise ValueError('CamVidDataset: data_root is required (the SegNet CamVid folder)')
        for key in ('data_prefix', 'ann_file'):
            if kwargs.get(key):
                raise ValueError(f'CamVidDataset: {key} is not used; the files follow from '
                                 'data_root and split')
            kwargs.pop(key, None)
        self.split = split
        super().__init__(data_root=data_root,
                         data_prefix=dict(img_path=split, seg_map_path=split + 'annot'),
                         img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    @classmethod
    def get_label_map(cls, new_classes=None):
        """MMSeg's class-subset map plus void (11) -> 255."""
        label_map = dict(super().get_label_map(new_classes) or {})
        label_map[CAMVID_VOID] = 255
        return label_map

    def load_data_list(self):
        pairs = paired_files(f'CamVidDataset (split {self.split!r})',
                             self.data_prefix['img_path'], self.data_prefix['seg_map_path'],
                             self.img_suffix, self.seg_map_suffix)
        return [
            dict(img_path=img, seg_map_path=seg, label_map=self.label_map,
                 reduce_zero_label=self.reduce_zero_label, seg_fields=[])
            for img, seg in pairs
        ]
