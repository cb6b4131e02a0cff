"""Images labelled by the frozen teacher: validation without ground truth.

A student distilled without data has no labelled set to be judged on. Its
*agreement with the teacher* can still be measured: the teacher's test-mode
prediction of an image (its own ``test_cfg``, whole or slide, at the image's
original size) is taken as the label, and MMSeg's ``IoUMetric`` does the rest.
The resulting mIoU says how closely the student follows the teacher; it is not
accuracy (a student that copies the teacher's mistakes scores 100).
"""
import copy
import hashlib
import json
import os
import os.path as osp

import numpy as np
import torch
from mmengine.dist import all_gather_object, broadcast_object_list, get_dist_info
from mmengine.logging import print_log
from mmengine.utils import ProgressBar
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS
from torch.utils.data import DataLoader

from ..core.fingerprint import file_stamp as _file_stamp
from ..core.fingerprint import jsonable as _jsonable
from ..core.fingerprint import setup_fingerprint
from ..core.pool_errors import (ScoreIOError, ScorePipelineError, SetupMismatchError,
                                TooManyUnreadableError)
from ..core.score_view import ScoreView as _ScoreView
from ..core.score_view import collate_records as _as_list
from ..core.teacher import build_frozen_segmentor, describe_model_spec, teacher_record

# part of every label fingerprint: bump when the way a label is made changes
LABELER_VERSION = 1
ANNOTATION_LOADERS = ('LoadAnnotations', 'mmseg.LoadAnnotations')
AGREEMENT_NOTE = ('mIoU on these images is agreement with the teacher (its predictions are '
                  'the labels), not accuracy')


def teacher_num_classes(segmentor):
    """Classes the segmentor predicts (``decode_head.num_classes``; the last head of a
    cascade). A binary head with ``out_channels=1`` still predicts 2 classes."""
    head = getattr(segmentor, 'decode_head', None)
    if isinstance(head, torch.nn.ModuleList):
        head = head[-1]
    num = getattr(head, 'num_classes', None)
    if num is None:
        raise TypeError(f'cannot read the number of classes of {type(segmentor).__name__} '
                        '(no decode_head.num_classes)')
    return int(num)


def without_annotations(pipeline):
    """``pipeline`` minus its ``LoadAnnotations``: what the teacher sees of an image."""
    return [copy.deepcopy(t) for t in pipeline
            if not (isinstance(t, dict) and t.get('type') in ANNOTATION_LOADERS)]


def image_key(path, stamp):
    """sha256 of an image file's identity: its path and its (size, mtime) stamp, as in
    the ADS score cache; an image overwritten in place gets a new key."""
    return hashlib.sha256(json.dumps([osp.abspath(path), stamp]).encode()).hexdigest()


def _write_png(path, label):
    """Writes a label map atomically (a killed run leaves no half-written label)."""
    from PIL import Image
    dtype = np.uint8 if label.max(initial=0) < 255 else np.uint16
    tmp = f'{path}.{os.getpid()}.tmp'
    Image.fromarray(label.astype(dtype)).save(tmp, format='PNG')
    os.replace(tmp, path)


def _write_text(path, text):
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


@DATASETS.register_module()
class TeacherLabeledDataset(BaseSegDataset):
    """Any MMSeg dataset of images, labelled by a frozen teacher.

    Each image's label is the teacher's test-mode prediction (``test_step``: its own
    ``data_preprocessor`` and ``test_cfg``, whole or slide) after ``label_pipeline``,
    resized back to the image's original size by MMSeg, and stored as a PNG label map
    under ``cache_dir/teacher-<setup[:16]>/<image key>.png``. The setup fingerprint
    covers the teacher's config and weights digest and the label pipeline; the image
    key covers the image's path and file stamp (size, mtime), as the ADS score cache's
    key does. So labels are made once; a changed teacher, pipeline or image file makes
    new labels, never reuses stale ones, and a rerun only checks that the files exist.

    Under torch.distributed, rank 0 finds the missing labels, the ranks label a share
    each (every image once) and every rank then reads the same files (``cache_dir``
    must be shared). Unreadable images are counted, remembered (a ``.unreadable``
    note) and skipped, as in ADS; more than ``max_unreadable`` of them stops.

    The dataset is a plain ``BaseSegDataset`` (``img_path``, ``seg_map_path``), so
    MMSeg's ``IoUMetric``, visualiser and ``tools/test.py`` give mIoU *against the
    teacher*: agreement, not accuracy.

    Args:
        dataset: the images (config dict or dataset): any object with ``__len__`` and
            ``get_data_info`` whose infos have ``img_path`` (``UnlabeledImageDataset``,
            ``COCOPoolDataset``, ``ADSHeldOutDataset``, a labelled MMSeg dataset...).
        teacher: the teacher spec, as elsewhere (config dict, config path with
            ``mmseg::``, or ``dict(cfg_path=..., **overrides)``).
        teacher_checkpoint: path or URL of the teacher's weights (strict loading).
        cache_dir: folder of the label caches.
        pipeline: the evaluation pipeline, with ``LoadAnnotations``.
        label_pipeline: what the teacher sees; default ``pipeline`` without
            ``LoadAnnotations``, so the teacher is scored exactly as a student is.
        metainfo: ``dict(classes=..., palette=...)``. Default: ``metainfo_from``'s,
            else the wrapped dataset's.
        metainfo_from: a registered dataset type whose ``METAINFO`` is used (e.g.
            ``'CityscapesDataset'``) when ``metainfo`` is not given.
        label_num_workers: DataLoader workers that load the images to label.
        max_unreadable: the share of the images that may be unreadable (0.05 = 5%).
        device: where the teacher runs (default: CUDA if available).
        progress: progress bar while labelling (rank 0).
        allow_random_teacher: allow ``teacher_checkpoint=None`` (tests only).
    """

    METAINFO = dict()  # the classes come from ``metainfo`` (no label remapping)

    def __init__(self, dataset, teacher, teacher_checkpoint=None,
                 cache_dir='work_dirs/teacher_labels', pipeline=(), label_pipeline=None,
                 metainfo=None, metainfo_from=None, label_num_workers=0, max_unreadable=0.05,
                 device=None, progress=True, allow_random_teacher=False, lazy_init=False,
                 **kwargs):
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        if not (hasattr(dataset, '__len__') and hasattr(dataset, 'get_data_info')):
            raise TypeError('TeacherLabeledDataset: dataset must be a config dict or a dataset '
                            f'with __len__ and get_data_info, got {type(dataset).__name__}')
        if not cache_dir:
            raise ValueError('TeacherLabeledDataset: cache_dir must be a folder (the teacher '
                             'labels are written there)')
        if isinstance(max_unreadable, bool) or not isinstance(max_unreadable, (int, float)) \
                or not 0 <= max_unreadable <= 1:
            raise ValueError('TeacherLabeledDataset: max_unreadable must be a share in [0, 1], '
                             f'got {max_unreadable!r}')
        for key in ('ann_file', 'data_prefix', 'reduce_zero_label', 'test_mode'):
            kwargs.pop(key, None)  # the labels fix these: no annotation file, no offset
        self.dataset = dataset
        self.teacher_cfg = teacher
        self.teacher_checkpoint = teacher_checkpoint
        self.allow_random_teacher = allow_random_teacher
        self.cache_dir = cache_dir
        pipeline = list(pipeline)
        self.label_pipeline = (without_annotations(pipeline) if label_pipeline is None
                               else copy.deepcopy(list(label_pipeline)))
        self.label_num_workers = label_num_workers
        self.max_unreadable = float(max_unreadable)
        self.device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        self.progress = progress
        self.num_unreadable = 0
        self.unreadable = {}  # img_path -> error of the images left out
        self.labelled_here = []  # indices (into ``dataset``) this process labelled
        self.label_dir = None
        self.teacher_record = None
        super().__init__(metainfo=self._resolve_metainfo(metainfo, metainfo_from),
                         pipeline=pipeline, lazy_init=lazy_init, reduce_zero_label=False,
                         data_prefix=dict(img_path='', seg_map_path=''), **kwargs)

    def _resolve_metainfo(self, metainfo, metainfo_from):
        if metainfo is None and metainfo_from is not None:
            cls = DATASETS.get(metainfo_from)
            if cls is None:
                raise KeyError(f'TeacherLabeledDataset: metainfo_from={metainfo_from!r} is not '
                               'a registered dataset type')
            metainfo = copy.deepcopy(dict(cls.METAINFO))
        if metainfo is None:
            metainfo = copy.deepcopy(dict(getattr(self.dataset, 'metainfo', None) or {}))
        if not metainfo or not metainfo.get('classes'):
            raise ValueError(
                'TeacherLabeledDataset: the class names are unknown: give '
                "metainfo=dict(classes=(...), palette=[...]) or metainfo_from='<dataset type>' "
                f"(the wrapped {type(self.dataset).__name__} has no 'classes')")
        return {k: metainfo[k] for k in ('classes', 'palette') if metainfo.get(k) is not None}

    # ------------------------------------------------------------- labelling
    def _image_infos(self):
        n = len(self.dataset)
        if n == 0:
            src = (getattr(self.dataset, 'ann_file', '') or
                   (getattr(self.dataset, 'data_prefix', None) or {}).get('img_path') or
                   getattr(self.dataset, 'data_root', None))
            raise ValueError(f'TeacherLabeledDataset: the image source '
                             f'{type(self.dataset).__name__} ({src!r}) has no images')
        paths = []
        for i in range(n):
            path = self.dataset.get_data_info(i).get('img_path')
            if not path:
                raise KeyError(f'TeacherLabeledDataset: sample {i} of the image source '
                               f'{type(self.dataset).__name__} has no img_path')
            paths.append(str(path))
        return paths

    def _build_teacher(self):
        teacher = build_frozen_segmentor(self.teacher_cfg, self.teacher_checkpoint, 'teacher',
                                         allow_random_teacher=self.allow_random_teacher)
        n_t = teacher_num_classes(teacher)
        classes = self._metainfo['classes']
        if n_t != len(classes):
            raise ValueError(
                f'TeacherLabeledDataset: the teacher ({describe_model_spec(self.teacher_cfg)}) '
                f'predicts {n_t} classes (decode_head.num_classes) but metainfo names '
                f'{len(classes)} classes ({", ".join(map(str, classes[:5]))}'
                f'{", ..." if len(classes) > 5 else ""}); give the classes of the teacher\'s '
                'training set')
        self.teacher_record = teacher_record(self.teacher_cfg, self.teacher_checkpoint,
                                             teacher)
        return teacher

    def setup_parts(self):
        """What the labels depend on besides the image (hashed into the folder name)."""
        rec = self.teacher_record
        return dict(version=LABELER_VERSION, teacher_config=rec['config_digest'],
                    teacher_weights=rec['weights_digest'],
                    label_pipeline=_jsonable(self.label_pipeline),
                    num_classes=len(self._metainfo['classes']))

    def _label(self, teacher, indices, paths, keys, rank):
        """Labels ``indices`` (this rank's share); returns ``{index: error}`` of the
        unreadable ones. Pipeline errors and lasting I/O errors stop."""
        teacher = teacher.to(self.device)
        view = _ScoreView(self.dataset, indices, self.label_pipeline)
        loader = DataLoader(view, batch_size=1, shuffle=False, collate_fn=_as_list,
                            num_workers=self.label_num_workers)
        bar = ProgressBar(len(indices)) if self.progress and rank == 0 and indices else None
        bad = {}
        limit = self.max_unreadable * len(paths)
        for (item, ) in loader:
            i = item['index']
            kind = item.get('kind')
            if kind == 'pipeline':
                raise ScorePipelineError(
                    f'TeacherLabeledDataset: {item["error"]}. This is a label_pipeline/config '
                    'error, not a bad image: labelling stopped.')
            if kind == 'transient':
                raise ScoreIOError(f'TeacherLabeledDataset: transient I/O error: '
                                   f'{item["error"]}; run again to resume')
            if kind == 'unreadable':
                print_log(f'TeacherLabeledDataset: skipping unreadable image {paths[i]!r}: '
                          f'{item["error"]}', logger='current', level=30)
                _write_text(osp.join(self.label_dir, keys[i] + '.unreadable'), item['error'])
                bad[i] = item['error']
                if len(bad) > limit:
                    raise TooManyUnreadableError(
                        f'TeacherLabeledDataset: at least {len(bad)} of {len(paths)} images '
                        f'unreadable - wrong data_root? (more than max_unreadable='
                        f'{self.max_unreadable:g}; e.g. {paths[i]!r})')
            else:
                with torch.no_grad():
                    pred = teacher.test_step(dict(inputs=[item['inputs']],
                                                  data_samples=[item['data_samples']]))[0]
                label = pred.pred_sem_seg.data[0].cpu().numpy()
                _write_png(osp.join(self.label_dir, keys[i] + '.png'), label)
                self.labelled_here.append(i)
            if bar is not None:
                bar.update()
        if bar is not None:
            print()
        return bad

    def load_data_list(self):
        """Labels the missing images (shared over the ranks), then lists image and
        label paths of every readable image."""
        paths = self._image_infos()
        stamps = [_file_stamp(p) for p in paths]
        keys = [image_key(p, s) for p, s in zip(paths, stamps)]
        teacher = self._build_teacher()
        parts = self.setup_parts()
        fp = setup_fingerprint(parts)
        self.label_dir = osp.join(self.cache_dir, f'teacher-{fp[:16]}')
        rank, world = get_dist_info()
        if world > 1:
            mine = (fp, setup_fingerprint(keys))
            seen = all_gather_object(mine)
            bad = [r for r, s in enumerate(seen) if s != seen[0]]
            if bad:
                what = ('teacher/label setup' if seen[bad[0]][0] != fp else
                        'images (paths or file stamps)')
                raise SetupMismatchError(
                    f'TeacherLabeledDataset: rank {bad[0]} and rank 0 see different '
                    f'{what}; all ranks must label the same images with the same teacher')
        todo = None
        if rank == 0:
            os.makedirs(self.label_dir, exist_ok=True)
            meta = osp.join(self.label_dir, 'meta.json')
            if not osp.exists(meta):
                _write_text(meta, json.dumps(dict(
                    setup=parts, teacher=self.teacher_record['spec'],
                    teacher_checkpoint=self.teacher_checkpoint), indent=1))
            todo = [i for i, k in enumerate(keys)
                    if not osp.exists(osp.join(self.label_dir, k + '.png'))
                    and not osp.exists(osp.join(self.label_dir, k + '.unreadable'))]
        if world > 1:
            box = [todo]
            broadcast_object_list(box, src=0)
            todo = box[0]
        exc = None
        try:
            if todo:
                if rank == 0:
                    print_log(f'TeacherLabeledDataset: the teacher labels {len(todo)} of '
                              f'{len(paths)} images into {self.label_dir}', logger='current')
                self._label(teacher, todo[rank::world], paths, keys, rank)
        except Exception as e:  # every rank must hear of it, or the others wait forever
            exc = e
        if world > 1:
            errs = all_gather_object(None if exc is None else (type(exc).__name__, str(exc)))
            first = next(((r, e) for r, e in enumerate(errs) if e is not None), None)
            if exc is None and first is not None:
                raise RuntimeError(f'TeacherLabeledDataset: labelling failed on rank '
                                   f'{first[0]}: {first[1][0]}: {first[1][1]}')
        if exc is not None:
            raise exc
        del teacher
        return self._collect(paths, keys, len(todo))

    def _collect(self, paths, keys, num_new):
        data_list, missing = [], []
        self.unreadable = {}
        for i, (path, key) in enumerate(zip(paths, keys)):
            label = osp.join(self.label_dir, key + '.png')
            note = osp.join(self.label_dir, key + '.unreadable')
            if osp.exists(label):
                data_list.append(dict(img_path=path, seg_map_path=label, label_map=None,
                                      reduce_zero_label=False, seg_fields=[],
                                      source_index=i))
            elif osp.exists(note):
                with open(note) as f:
                    self.unreadable[path] = f.read()
            else:
                missing.append(path)
        if missing:
            raise RuntimeError(
                f'TeacherLabeledDataset: no label in {self.label_dir} for {len(missing)} '
                f'image(s), e.g. {missing[:3]}; under several nodes cache_dir must be a folder '
                'they all share')
        self.num_unreadable = len(self.unreadable)
        if len(self.unreadable) > self.max_unreadable * len(paths):
            raise TooManyUnreadableError(
                f'TeacherLabeledDataset: {len(self.unreadable)} of {len(paths)} images are '
                f'unreadable - wrong data_root? (max_unreadable={self.max_unreadable:g}; e.g. '
                f'{sorted(self.unreadable)[:3]})')
        if not data_list:
            raise ValueError(f'TeacherLabeledDataset: none of the {len(paths)} images of the '
                             'image source could be read')
        print_log(f'TeacherLabeledDataset: {len(data_list)} images labelled by the teacher '
                  f'({num_new} labelled now, {len(paths) - num_new} from {self.label_dir}, '
                  f'{self.num_unreadable} unreadable skipped). {AGREEMENT_NOTE}.',
                  logger='current')
        return data_list


__all__ = ['TeacherLabeledDataset', 'AGREEMENT_NOTE', 'teacher_num_classes',
           'without_annotations', 'image_key']
