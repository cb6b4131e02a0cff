"""Images labelled by the frozen teacher: validation without ground truth.

A student distilled without data has no labelled set to be judged on. Its
*agreement with the teacher* can still be measured: the teacher's test-mode
prediction of an image (its own ``test_cfg``, whole or slide, at the image's
original size) is taken as the label, and MMSeg's ``IoUMetric`` does the rest.
The resulting mIoU says how closely the student follows the teacher; it is not
accuracy (a student that copies the teacher's mistakes scores 100).
"""
import copy
import os.path as osp

import torch
from mmengine.logging import print_log
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from ..core.pool_errors import TooManyUnreadableError
from ..core.teacher import load_model_config
from ..core.teacher_defaults import default_eval_pipeline, teacher_metainfo, without_annotations
from .teacher_label_format import label_ignore_index, label_loading_pipeline, wide_labels
from .teacher_labeling import (LabelSizeError, TeacherLabeler, image_key, image_loader,
                               teacher_num_classes)

AGREEMENT_NOTE = ('mIoU on these images is agreement with the teacher (its predictions are '
                  'the labels), not accuracy')


def _checked_source(dataset, teacher, cache_dir, max_unreadable):
    """The image source, built from its config; the arguments a user gets wrong named
    before any labelling starts."""
    if not teacher:
        raise ValueError('TeacherLabeledDataset: teacher is not set: give teacher= (in a '
                         'DFSS config set model.teacher; DFSSRunner and the tools copy it '
                         'here)')
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
    return dataset


def _warn_wide_labels(num_classes, ignore_index):
    """255 is a class of this teacher: MMSeg's default ``ignore_index`` would drop it."""
    print_log(f'TeacherLabeledDataset: the teacher has {num_classes} classes, so 255 is a '
              f'class: score with IoUMetric(ignore_index={ignore_index}), not its default '
              '255 (tools/label_free_config.py and tools/teacher_label.py write it)',
              logger='current', level=30)


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
    teacher*: agreement, not accuracy. The labels are in the teacher's classes, so the
    inherited ``LoadAnnotations``' ``reduce_zero_label`` is dropped (logged); a teacher
    of more than 255 classes gets 16-bit labels, ``LoadTeacherLabel`` and an
    ``IoUMetric`` ``ignore_index`` of ``self.ignore_index`` (see
    ``teacher_label_format``). The labelling itself is :class:`TeacherLabeler`'s.

    Args:
        dataset: the images (config dict or dataset): any object with ``__len__`` and
            ``get_data_info`` whose infos have ``img_path`` (``UnlabeledImageDataset``,
            ``COCOPoolDataset``, ``ADSHeldOutDataset``, a labelled MMSeg dataset...).
        teacher: the teacher spec, as elsewhere (config dict, config path with
            ``mmseg::``, or ``dict(cfg_path=..., **overrides)``). In a DFSS config leave
            it unset: the runner and the tools fill in ``model.teacher``.
        teacher_checkpoint: path or URL of the teacher's weights (strict loading);
            unset in a DFSS config: ``model.teacher_checkpoint``.
        cache_dir: folder of the label caches.
        pipeline: the evaluation pipeline, with ``LoadAnnotations``; None: the teacher
            config's test pipeline, else the image at its native size (logged).
        label_pipeline: what the teacher sees; default ``pipeline`` without
            ``LoadAnnotations``, so the teacher is scored exactly as a student is.
        metainfo: ``dict(classes=..., palette=...)``. Default: ``metainfo_from``'s,
            else the wrapped dataset's, else the teacher config's dataset's, else
            ``class_0 .. class_{C-1}`` (C: the teacher's ``decode_head.num_classes``).
        metainfo_from: a registered dataset type whose ``METAINFO`` is used (e.g.
            ``'CityscapesDataset'``) when ``metainfo`` is not given.
        label_num_workers: DataLoader workers that load the images to label.
        max_unreadable: the share of the images that may be unreadable (0.05 = 5%).
        device: where the teacher runs (default: CUDA if available).
        progress: progress bar while labelling (rank 0).
        allow_random_teacher: allow ``teacher_checkpoint=None`` (tests only).
    """

    METAINFO = dict()  # the classes come from ``metainfo`` (no label remapping)

    def __init__(self, dataset, teacher=None, teacher_checkpoint=None,
                 cache_dir='work_dirs/teacher_labels', pipeline=None, label_pipeline=None,
                 metainfo=None, metainfo_from=None, label_num_workers=0, max_unreadable=0.05,
                 device=None, progress=True, allow_random_teacher=False, lazy_init=False,
                 **kwargs):
        dataset = _checked_source(dataset, teacher, cache_dir, max_unreadable)
        for key in ('ann_file', 'data_prefix', 'reduce_zero_label', 'test_mode', 'ignore_index'):
            kwargs.pop(key, None)  # the labels fix these: no annotation file, no offset
        self.dataset = dataset
        self.teacher_cfg = teacher
        self.teacher_checkpoint = teacher_checkpoint
        self.cache_dir = cache_dir
        metainfo = self._resolve_metainfo(metainfo, metainfo_from, teacher)
        if pipeline is None:
            pipeline = default_eval_pipeline(teacher, 'TeacherLabeledDataset')
        num_classes = len(metainfo['classes'])
        self.label_pipeline = (without_annotations(pipeline) if label_pipeline is None
                               else copy.deepcopy(list(label_pipeline)))
        pipeline = label_loading_pipeline(list(pipeline), num_classes)
        self.labeler = self._labeler(pipeline, metainfo['classes'], label_num_workers,
                                     max_unreadable, device, progress, allow_random_teacher)
        self.max_unreadable = float(max_unreadable)
        self.ignore_index = label_ignore_index(num_classes)
        if wide_labels(num_classes):
            _warn_wide_labels(num_classes, self.ignore_index)
        self.num_unreadable = 0
        self.unreadable = {}  # img_path -> error of the images left out
        self.labelled_here = []  # indices (into ``dataset``) this process labelled
        self.label_dir = None
        self.teacher_record = None
        super().__init__(metainfo=metainfo, pipeline=pipeline, lazy_init=lazy_init,
                         reduce_zero_label=False, ignore_index=self.ignore_index,
                         data_prefix=dict(img_path='', seg_map_path=''), **kwargs)

    def _labeler(self, pipeline, classes, num_workers, max_unreadable, device, progress,
                 allow_random_teacher):
        """The :class:`TeacherLabeler` of this set; it reads image sizes with the
        evaluation pipeline's loader when that differs from what the teacher sees."""
        loader = image_loader(pipeline)
        return TeacherLabeler(
            self.teacher_cfg, self.teacher_checkpoint, classes, self.label_pipeline,
            self.cache_dir, num_workers=num_workers, max_unreadable=float(max_unreadable),
            device=device or ('cuda' if torch.cuda.is_available() else 'cpu'),
            progress=progress, allow_random_teacher=allow_random_teacher,
            size_loader=None if loader == image_loader(self.label_pipeline) else loader)

    def _resolve_metainfo(self, metainfo, metainfo_from, teacher):
        if metainfo is None and metainfo_from is not None:
            cls = DATASETS.get(metainfo_from)
            if cls is None:
                raise KeyError(f'TeacherLabeledDataset: metainfo_from={metainfo_from!r} is not '
                               'a registered dataset type')
            metainfo = copy.deepcopy(dict(cls.METAINFO))
        if metainfo is None:
            metainfo = copy.deepcopy(dict(getattr(self.dataset, 'metainfo', None) or {}))
        if not metainfo or not metainfo.get('classes'):
            metainfo = self._teacher_metainfo(teacher)
        return {k: metainfo[k] for k in ('classes', 'palette') if metainfo.get(k) is not None}

    def _teacher_metainfo(self, teacher):
        """The class names of the teacher config's dataset, else ``class_<i>`` for each
        class of its decode head (logged)."""
        head = load_model_config(teacher).get('decode_head')
        if isinstance(head, (list, tuple)):
            head = head[-1]
        num = (head or {}).get('num_classes')
        metainfo, where = teacher_metainfo(teacher, num if isinstance(num, int) else None,
                                           'TeacherLabeledDataset')
        if metainfo is not None:
            print_log(f'TeacherLabeledDataset: class names from the teacher\'s {where}',
                      logger='current')
            return metainfo
        if not isinstance(num, int):
            raise ValueError(
                'TeacherLabeledDataset: the class names are unknown (no metainfo, '
                'metainfo_from, wrapped dataset classes or teacher dataset) and the teacher '
                'config has no decode_head.num_classes: give metainfo=dict(classes=(...))')
        print_log(f'TeacherLabeledDataset: no class names given or in the teacher config: '
                  f'class_0 .. class_{num - 1}', logger='current', level=30)
        return dict(classes=tuple(f'class_{i}' for i in range(num)))

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

    def setup_parts(self):
        """What the labels depend on besides the image (hashed into the folder name)."""
        return self.labeler.setup_parts()

    def load_data_list(self):
        """Labels the missing images (shared over the ranks), then lists image and
        label paths of every readable image."""
        run = self.labeler.label(self.dataset, self._image_infos())
        self.label_dir = run.label_dir
        self.labelled_here = run.labelled_here
        self.teacher_record = self.labeler.teacher_record
        return self._collect(run.paths, run.keys, run.num_new)

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
           'without_annotations', 'image_key', 'LabelSizeError']
