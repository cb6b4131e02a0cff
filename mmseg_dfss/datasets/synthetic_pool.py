import csv
import os.path as osp

from mmseg.registry import DATASETS

from .unlabeled_image import UnlabeledImageDataset


@DATASETS.register_module()
class SyntheticPoolDataset(UnlabeledImageDataset):
    """The synthetic open-world pool written by ``tools/generate_synthetic.py``.

    Reads ``pool.csv`` (index, filename, subdomain) under the image folder; every
    sample carries its ``subdomain`` tag so a sampler's picks can be judged. No
    label is read.
    """

    def __init__(self, ann_file='pool.csv', **kwargs):
        super().__init__(ann_file=ann_file, **kwargs)

    def _rows(self):
        path = self.ann_file
        if not osp.isfile(path):
            raise FileNotFoundError(f'SyntheticPoolDataset: {path!r} does not exist; generate '
                                    'the pool with tools/generate_synthetic.py')
        with open(path, newline='') as f:
            rows = list(csv.DictReader(f))
        if rows and set(rows[0]) != {'index', 'filename', 'subdomain'}:
            raise ValueError(f'SyntheticPoolDataset: {path!r} must have the header '
                             f'index,filename,subdomain; got {list(rows[0])}')
        return rows

    def image_list(self):
        self._subdomains = {}
        rels = []
        for row in self._rows():
            self._subdomains[row['filename']] = row['subdomain']
            rels.append(row['filename'])
        return rels

    def extra_info(self, index, rel_path):
        return dict(subdomain=self._subdomains[rel_path])
