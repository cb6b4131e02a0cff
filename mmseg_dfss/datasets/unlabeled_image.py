import os
import os.path as osp

from mmengine.dataset import BaseDataset
from mmengine.fileio import list_from_file
from mmseg.registry import DATASETS

from ..core.image_header import IMG_EXTENSIONS


@DATASETS.register_module()
class UnlabeledImageDataset(BaseDataset):
    """An open-world pool of images without labels (a folder, or a list file).

    The images are found recursively under ``data_root/data_prefix['img_path']``
    (sorted, so the pool index of a file is stable), or read from ``ann_file``
    (one path per line, relative to the image folder). Each sample carries
    ``img_path`` and ``pool_index``; no ``seg_map_path``, so MMSeg's transforms
    (resize, crop, flip, PackSegInputs) handle it as an image-only sample.

    Args:
        suffixes: file endings that count as images when scanning a folder.
    """

    METAINFO = dict(classes=None, palette=None)

    def __init__(self, ann_file='', data_prefix=dict(img_path=''), suffixes=IMG_EXTENSIONS,
                 **kwargs):
        self.suffixes = tuple(s.lower() for s in suffixes)
        super().__init__(ann_file=ann_file, data_prefix=data_prefix, **kwargs)

    def _scan(self, img_dir):
        if not osp.isdir(img_dir):
            raise FileNotFoundError(f'{type(self).__name__}: image folder {img_dir!r} does not '
                                    'exist (check data_root and data_prefix.img_path)')
        found = []
        for dirpath, dirnames, filenames in os.walk(img_dir, followlinks=True):
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(self.suffixes):
                    found.append(osp.relpath(osp.join(dirpath, name), img_dir))
        # sorted by relative path: the order (and pool index) does not depend on
        # how the folder is walked
        return sorted(found)

    def image_list(self):
        """Relative paths of the pool's images, in pool-index order."""
        img_dir = self.data_prefix.get('img_path', '') or self.data_root or ''
        if self.ann_file:
            if not osp.isfile(self.ann_file):
                raise FileNotFoundError(f'{type(self).__name__}: list file {self.ann_file!r} '
                                        'does not exist')
            return [line.strip() for line in list_from_file(self.ann_file) if line.strip()]
        return self._scan(img_dir)

    def extra_info(self, index, rel_path):
        """Per-sample fields added to the data info; subclasses add tags."""
        return {}

    def load_data_list(self):
        img_dir = self.data_prefix.get('img_path', '') or self.data_root or ''
        data_list = []
        for index, rel in enumerate(self.image_list()):
            info = dict(img_path=osp.join(img_dir, rel), pool_index=index, seg_fields=[],
                        reduce_zero_label=False)
            info.update(self.extra_info(index, rel))
            data_list.append(info)
        if not data_list:
            src = self.ann_file or img_dir
            raise ValueError(f'{type(self).__name__}: no images found in {src!r} '
                             f'(suffixes {self.suffixes})')
        return data_list
