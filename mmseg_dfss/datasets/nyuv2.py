import os.path as osp

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .layout_utils import check_dirs, missing_files_error, paired_files

NYUV2_CLASSES = ('bed', 'books', 'ceiling', 'chair', 'floor', 'furniture', 'objects',
                 'picture', 'sofa', 'table', 'tv', 'wall', 'window')
# DFAD's colours (the PASCAL VOC colour map, entries 1..13)
NYUV2_PALETTE = [[128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128],
                 [0, 128, 128], [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0],
                 [192, 128, 0], [64, 0, 128], [192, 0, 128]]

# DFAD's layout: images by 0-based index, labels (0 = unlabelled, 1..13) by the
# 1-based index of splits.mat
DFAD_IMAGE_DIR = osp.join('480_640', 'IMAGE')
DFAD_LABEL_DIR = osp.join('nyuv2-meta-data', '{split}_labels_13')
DFAD_LABEL_NAME = 'new_nyu_class13_{index:04d}.png'
DFAD_SPLIT_FILES = (osp.join('nyuv2-meta-data', 'splits.mat'), 'splits.mat')
# the toolkit's layout: labels already 0..12 with 255 = unlabelled
TOOLKIT_IMAGE_DIR = osp.join('image', '{split}')
TOOLKIT_LABEL_DIR = osp.join('seg13', '{split}')


def load_nyuv2_split_indices(path, split):
    """The 1-based image indices of ``split`` ('train'/'test') in NYUv2's
    ``splits.mat`` (keys ``trainNdxs`` / ``testNdxs``)."""
    from scipy.io import loadmat
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises several types for a broken file
        raise ValueError(f'NYUv2: cannot read the splits file {path!r}: {e}') from e
    key = f'{split}Ndxs'
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith('__'))
        raise KeyError(f'NYUv2: the splits file {path!r} has no {key!r} (keys: {found})')
    indices = [int(i) for i in mat[key].reshape(-1)]
    if not indices:
        raise ValueError(f'NYUv2: {key!r} in the splits file {path!r} is empty')
    if min(indices) < 1:
        raise ValueError(f'NYUv2: {key!r} in the splits file {path!r} holds index '
                         f'{min(indices)}; splits.mat indices are 1-based')
    return indices


@DATASETS.register_module()
class NYUv2Dataset(BaseSegDataset):
    """NYUv2 with DFAD's 13 classes; 795 train / 654 test images.

    Reads either layout (``layout='auto'`` detects it under ``data_root``):

    - ``'dfad'``: ``480_640/IMAGE/<i-1>.png`` and
      ``nyuv2-meta-data/<split>_labels_13/new_nyu_class13_<i:04d>.png`` for every
      index i of ``splits.mat`` (under ``nyuv2-meta-data/`` or ``data_root``).
      Labels are 0 = unlabelled, 1..13, so ``reduce_zero_label`` is on
      (MMSeg's LoadAnnotations maps 0 -> 255, k -> k-1).
    - ``'toolkit'``: ``image/<split>/*.png`` with ``seg13/<split>/*.png`` of the
      same name, labels already 0..12 with 255 = unlabelled.

    Args:
        split: 'train' or 'test'.
        layout: 'auto', 'dfad' or 'toolkit'.
        split_file: the DFAD layout's splits file (relative to ``data_root``);
            default: found at ``nyuv2-meta-data/splits.mat`` or ``splits.mat``.
    """

    METAINFO = dict(classes=NYUV2_CLASSES, palette=NYUV2_PALETTE)
    LAYOUTS = ('dfad', 'toolkit')

    def __init__(self, data_root=None, split='train', layout='auto', split_file=None,
                 img_suffix='.png', seg_map_suffix='.png', **kwargs):
        if split not in ('train', 'test'):
            raise ValueError(f"NYUv2Dataset: split must be 'train' or 'test', got {split!r}")
        if not data_root:
            raise ValueError('NYUv2Dataset: data_root is required (the NYUv2 folder)')
        for key in ('data_prefix', 'ann_file'):
            if kwargs.get(key):
                raise ValueError(f'NYUv2Dataset: {key} is not used; the files follow from '
                                 'data_root, split and layout')
            kwargs.pop(key, None)
        self.split = split
        self.split_file = split_file
        self.layout = self.detect_layout(data_root) if layout == 'auto' else layout
        if self.layout not in self.LAYOUTS:
            raise ValueError(f"NYUv2Dataset: layout must be 'auto' or one of {self.LAYOUTS}, "
                             f'got {layout!r}')
        reduce_zero_label = self.layout == 'dfad'
        if kwargs.pop('reduce_zero_label', reduce_zero_label) != reduce_zero_label:
            raise ValueError(f'NYUv2Dataset: the {self.layout!r} layout needs '
                             f'reduce_zero_label={reduce_zero_label}; leave it unset')
        if self.layout == 'dfad':
            data_prefix = dict(img_path=DFAD_IMAGE_DIR,
                               seg_map_path=DFAD_LABEL_DIR.format(split=split))
        else:
            data_prefix = dict(img_path=TOOLKIT_IMAGE_DIR.format(split=split),
                               seg_map_path=TOOLKIT_LABEL_DIR.format(split=split))
        super().__init__(data_root=data_root, data_prefix=data_prefix, img_suffix=img_suffix,
                         seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         **kwargs)

    @classmethod
    def detect_layout(cls, data_root):
        """'dfad' or 'toolkit', from the folders found under ``data_root``."""
        if not osp.isdir(data_root):
            raise FileNotFoundError(f'NYUv2Dataset: data_root {data_root!r} does not exist')
        found = []
        if osp.isdir(osp.join(data_root, DFAD_IMAGE_DIR)):
            found.append('dfad')
        if (osp.isdir(osp.join(data_root, 'image'))
                and osp.isdir(osp.join(data_root, 'seg13'))):
            found.append('toolkit')
        if len(found) == 1:
            return found[0]
        if not found:
            raise FileNotFoundError(
                f'NYUv2Dataset: no known layout under {data_root!r}: expected '
                f"{DFAD_IMAGE_DIR}/ + nyuv2-meta-data/ (DFAD's) or image/ + seg13/ "
                "(the toolkit's); see docs/datasets.md")
        raise ValueError(f'NYUv2Dataset: both layouts {found} exist under {data_root!r}; '
                         "choose one with layout='dfad' or layout='toolkit'")

    def _find_split_file(self):
        if self.split_file:
            candidates = [self.split_file if osp.isabs(self.split_file)
                          else osp.join(self.data_root, self.split_file)]
        else:
            candidates = [osp.join(self.data_root, p) for p in DFAD_SPLIT_FILES]
        for path in candidates:
            if osp.isfile(path):
                return path
        raise FileNotFoundError('NYUv2Dataset: splits file not found; looked for '
                                + ' and '.join(repr(p) for p in candidates))

    def _sample(self, img_path, seg_map_path):
        return dict(img_path=img_path, seg_map_path=seg_map_path, label_map=self.label_map,
                    reduce_zero_label=self.reduce_zero_label, seg_fields=[])

    def _load_dfad(self, img_dir, ann_dir):
        check_dirs(self._who(), img_dir, ann_dir)
        split_path = self._find_split_file()
        indices = load_nyuv2_split_indices(split_path, self.split)
        data_list = [
            self._sample(osp.join(img_dir, f'{i - 1}{self.img_suffix}'),
                         osp.join(ann_dir, DFAD_LABEL_NAME.format(index=i)))
            for i in indices
        ]
        for key, what in (('img_path', 'images'), ('seg_map_path', 'labels')):
            missing = [d[key] for d in data_list if not osp.isfile(d[key])]
            if missing:
                raise missing_files_error(
                    f'{self._who()}: {what} listed in {split_path!r} do not exist', missing,
                    len(data_list))
        return data_list

    def _load_toolkit(self, img_dir, ann_dir):
        pairs = paired_files(self._who(), img_dir, ann_dir, self.img_suffix,
                             self.seg_map_suffix)
        return [self._sample(img, seg) for img, seg in pairs]

    def _who(self):
        return f'NYUv2Dataset ({self.layout} layout, split {self.split!r})'

    def load_data_list(self):
        img_dir = self.data_prefix['img_path']
        ann_dir = self.data_prefix['seg_map_path']
        if self.layout == 'dfad':
            return self._load_dfad(img_dir, ann_dir)
        return self._load_toolkit(img_dir, ann_dir)
