import hashlib
import json
import os
import os.path as osp
from collections import Counter

from mmengine.dist import broadcast_object_list, get_dist_info
from mmengine.logging import print_log
from mmseg.registry import DATASETS

from ..core.atomic_file import atomic_write
from .unlabeled_image import UnlabeledImageDataset

INDEX_FORMAT = 'mmseg-dfss-coco-pool-index/1'


@DATASETS.register_module()
class COCOPoolDataset(UnlabeledImageDataset):
    """COCO (or any COCO-format annotation file) as an open-world pool: images only.

    The image list comes from ``ann_file``, in image-id order (the pool index is
    stable across runs). The annotations only filter the pool; no label is
    returned. The options carry the paper's *task relevance* (Sec. 3.2, Eq. 5):
    keep images showing chosen categories, or enough objects. Each sample also
    carries the annotation's ``height``/``width``, so ADS plans full batches of
    one shape without opening the images.

    Parsing train2017's ~450 MB annotation file takes tens of seconds and
    gigabytes of memory, so the filtered image list (file names, ids, instance
    counts, sizes) is kept in a small index file in ``index_dir``, keyed by the
    annotation file's name, size and mtime and by the filters. Rank 0 builds it
    once; every later run, and every other rank, reads the index instead.

    Args:
        ann_file: the COCO annotation file (e.g. instances_train2017.json).
        min_instances: keep images with at least this many annotated,
            non-crowd instances (of the chosen categories, if any). 0 keeps
            every image, unannotated ones included.
        categories: category names and/or ids; when given, an image is kept
            only if it has at least ``max(min_instances, 1)`` instances of them.
        index_dir: folder of pool index files (relative paths: to the working
            directory; on several nodes, a shared folder). None: parse the
            annotation file every time.
    """

    def __init__(self, ann_file='', min_instances=0, categories=None,
                 index_dir='work_dirs/coco_pool_index', **kwargs):
        if not ann_file:
            raise ValueError('COCOPoolDataset: ann_file (a COCO annotation .json) is required')
        if min_instances < 0:
            raise ValueError(f'COCOPoolDataset: min_instances must be >= 0, got {min_instances}')
        self.min_instances = int(min_instances)
        self.categories = list(categories) if categories is not None else None
        self.index_dir = index_dir
        super().__init__(ann_file=ann_file, **kwargs)

    def _check_file(self):
        path = self.ann_file
        if not osp.isfile(path):
            raise FileNotFoundError(f'COCOPoolDataset: annotation file {path!r} does not exist')
        if osp.getsize(path) == 0:
            raise ValueError(f'COCOPoolDataset: annotation file {path!r} is empty')

    def _load_json(self):
        path = self.ann_file
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
        return content

    def _category_ids(self, categories):
        names = [c for c in self.categories if isinstance(c, str)]
        ids = [c for c in self.categories if not isinstance(c, str)]
        known = {c['name']: c['id'] for c in categories}
        cat_ids = {c['id'] for c in categories}
        unknown = [n for n in names if n not in known] + [i for i in ids if i not in cat_ids]
        if unknown:
            raise ValueError(f'COCOPoolDataset: categories {unknown} are not in '
                             f'{self.ann_file!r} (it has {sorted(known)})')
        return {known[n] for n in names} | set(ids)

    def _parse(self):
        """``(number of images in the file, [[file_name, id, num_instances,
        height, width], ...])`` of the kept images, from the annotation file."""
        content = self._load_json()
        cat_ids = (self._category_ids(content['categories'])
                   if self.categories is not None else None)
        need = max(self.min_instances, 1) if cat_ids is not None else self.min_instances
        counts = Counter(a['image_id'] for a in content['annotations']
                         if not a.get('iscrowd', 0)
                         and (cat_ids is None or a.get('category_id') in cat_ids))
        images = {im['id']: im for im in content['images']}  # a repeated id: the last wins
        del content
        kept = [[images[i]['file_name'], i, counts.get(i, 0), images[i].get('height'),
                 images[i].get('width')]
                for i in sorted(images) if counts.get(i, 0) >= need]
        return len(images), kept

    def _index_key(self):
        st = os.stat(self.ann_file)
        key = json.dumps(dict(format=INDEX_FORMAT, ann_file=osp.basename(self.ann_file),
                              size=st.st_size, mtime_ns=st.st_mtime_ns,
                              min_instances=self.min_instances, categories=self.categories),
                         sort_keys=True, default=repr)
        return key, osp.join(self.index_dir, osp.splitext(osp.basename(self.ann_file))[0] +
                             f'-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json')

    def _read_index(self, key, path):
        try:
            with open(path) as f:
                index = json.load(f)
            if index.get('key') != key:
                return None
            return int(index['num_images']), list(index['images'])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # missing or damaged: built again

    def _write_index(self, key, path, total, kept):
        try:
            os.makedirs(self.index_dir, exist_ok=True)
            with atomic_write(path) as f:
                json.dump(dict(key=key, num_images=total, images=kept), f)
        except OSError as e:
            print_log(f'COCOPoolDataset: could not write the pool index {path!r} ({e}); the '
                      'annotation file will be parsed again next time', logger='current',
                      level=30)

    def _indexed(self):
        """Rank 0 reads or builds the index; the other ranks read it after rank 0
        is done (a broadcast every rank joins), and parse the file themselves
        only if they cannot see it."""
        key, path = self._index_key()
        rank, world = get_dist_info()
        entries = status = None
        if rank == 0:
            try:
                entries = self._read_index(key, path)
                if entries is None:
                    entries = self._parse()
                    self._write_index(key, path, *entries)
                    print_log(f'COCOPoolDataset: wrote the pool index {path}', logger='current')
                status = 'ok'
            except Exception as e:
                if world == 1:
                    raise
                status = f'{type(e).__name__}: {e}'
                error = e
        if world > 1:
            box = [status]
            broadcast_object_list(box, src=0)
            status = box[0]
            if status != 'ok':
                if rank == 0:
                    raise error
                raise ValueError(f'COCOPoolDataset: rank 0 failed to read {self.ann_file!r}: '
                                 f'{status}')
            if rank != 0:
                entries = self._read_index(key, path)
                if entries is None:
                    print_log(f'COCOPoolDataset: rank {rank} does not see the pool index '
                              f'{path!r} that rank 0 wrote (index_dir not shared?); parsing '
                              f'{self.ann_file!r} here too', logger='current', level=30)
                    entries = self._parse()
        return entries

    def _check_file_names(self, kept):
        """A ``file_name`` is a path inside the image folder: an absolute one, or one with
        a ``..`` part, would read (and tools/teacher_label.py copy) a file outside it."""
        for name, image_id, *_ in kept:
            parts = name.replace('\\', '/').split('/') if isinstance(name, str) else None
            if (not parts or not name or osp.isabs(name) or name.startswith(('/', '\\'))
                    or '..' in parts or osp.splitdrive(name)[0] or '\0' in name):
                raise ValueError(f'COCOPoolDataset: annotation file {self.ann_file!r}: image '
                                 f'id {image_id} has file_name {name!r}, which is not a path '
                                 'inside the image folder (absolute, or with ..); refused')

    def image_list(self):
        self._check_file()
        total, kept = self._indexed() if self.index_dir else self._parse()
        self._check_file_names(kept)
        if not kept:
            raise ValueError(f'COCOPoolDataset: no image of {self.ann_file!r} passes the filter '
                             f'(min_instances={self.min_instances}, '
                             f'categories={self.categories})')
        self._coco_info = [dict(coco_image_id=i, num_instances=n, height=h, width=w)
                           for _, i, n, h, w in kept]
        print_log(f'COCOPoolDataset: {len(kept)} of {total} images of '
                  f'{self.ann_file} (min_instances={self.min_instances}, '
                  f'categories={self.categories})', logger='current')
        return [rel for rel, *_ in kept]

    def extra_info(self, index, rel_path):
        return dict(self._coco_info[index])
