import contextlib
import io
import json
import os.path as osp

from mmengine.logging import print_log
from mmseg.registry import DATASETS

from .unlabeled_image import UnlabeledImageDataset


@DATASETS.register_module()
class COCOPoolDataset(UnlabeledImageDataset):
    """COCO (or any COCO-format annotation file) as an open-world pool: images only.

    The image list comes from ``ann_file`` through pycocotools, in image-id order
    (the pool index is stable across runs). The annotations only filter the
    pool; no label is returned. The options carry the paper's *task relevance*
    (Sec. 3.2, Eq. 5): keep images showing chosen categories, or enough objects.

    Args:
        ann_file: the COCO annotation file (e.g. instances_train2017.json).
        min_instances: keep images with at least this many annotated,
            non-crowd instances (of the chosen categories, if any). 0 keeps
            every image, unannotated ones included.
        categories: category names and/or ids; when given, an image is kept
            only if it has at least ``max(min_instances, 1)`` instances of them.
    """

    def __init__(self, ann_file='', min_instances=0, categories=None, **kwargs):
        if not ann_file:
            raise ValueError('COCOPoolDataset: ann_file (a COCO annotation .json) is required')
        if min_instances < 0:
            raise ValueError(f'COCOPoolDataset: min_instances must be >= 0, got {min_instances}')
        self.min_instances = int(min_instances)
        self.categories = list(categories) if categories is not None else None
        super().__init__(ann_file=ann_file, **kwargs)

    def _load_coco(self):
        path = self.ann_file
        if not osp.isfile(path):
            raise FileNotFoundError(f'COCOPoolDataset: annotation file {path!r} does not exist')
        if osp.getsize(path) == 0:
            raise ValueError(f'COCOPoolDataset: annotation file {path!r} is empty')
        try:
            with open(path) as f:
                content = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f'COCOPoolDataset: annotation file {path!r} is not valid JSON: '
                             f'{e}') from e
        if not isinstance(content, dict) or not isinstance(content.get('images'), list):
            raise ValueError(f'COCOPoolDataset: annotation file {path!r} is not in COCO format '
                             "(no 'images' list)")
        content.setdefault('annotations', [])
        content.setdefault('categories', [])
        for key, fields in (('images', ('id', 'file_name')),
                            ('annotations', ('image_id', 'category_id')),
                            ('categories', ('id', 'name'))):
            bad = next((e for e in content[key]
                        if not isinstance(e, dict) or any(f not in e for f in fields)), None)
            if bad is not None:
                raise ValueError(f'COCOPoolDataset: annotation file {path!r} has an entry of '
                                 f'{key!r} without {fields}: {str(bad)[:200]}')
        from pycocotools.coco import COCO
        coco = COCO()
        coco.dataset = content
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
        return coco

    def _category_ids(self, coco):
        names = [c for c in self.categories if isinstance(c, str)]
        ids = [c for c in self.categories if not isinstance(c, str)]
        known = {c['name']: c['id'] for c in coco.loadCats(coco.getCatIds())}
        unknown = [n for n in names if n not in known] + [i for i in ids if i not in coco.cats]
        if unknown:
            raise ValueError(f'COCOPoolDataset: categories {unknown} are not in '
                             f'{self.ann_file!r} (it has {sorted(known)})')
        return {known[n] for n in names} | set(ids)

    def image_list(self):
        coco = self._load_coco()
        cat_ids = self._category_ids(coco) if self.categories is not None else None
        need = max(self.min_instances, 1) if cat_ids is not None else self.min_instances
        self._coco_info = []
        rels = []
        for img_id in sorted(coco.imgs):
            anns = [a for a in coco.imgToAnns.get(img_id, [])
                    if not a.get('iscrowd', 0)
                    and (cat_ids is None or a.get('category_id') in cat_ids)]
            if len(anns) < need:
                continue
            rel = coco.imgs[img_id]['file_name']
            self._coco_info.append(dict(coco_image_id=img_id, num_instances=len(anns)))
            rels.append(rel)
        if not rels:
            raise ValueError(f'COCOPoolDataset: no image of {self.ann_file!r} passes the filter '
                             f'(min_instances={self.min_instances}, '
                             f'categories={self.categories})')
        print_log(f'COCOPoolDataset: {len(rels)} of {len(coco.imgs)} images of '
                  f'{self.ann_file} (min_instances={self.min_instances}, '
                  f'categories={self.categories})', logger='current')
        return rels

    def extra_info(self, index, rel_path):
        return dict(self._coco_info[index])
