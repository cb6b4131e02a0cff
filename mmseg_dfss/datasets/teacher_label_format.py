"""How a teacher label is stored on disk and loaded back, for any class count.

MMSeg's ``LoadAnnotations`` decodes a label map and casts it to ``uint8``, and
``IoUMetric`` ignores the label value 255 by default. So a teacher with at most 255
classes (classes 0 .. 254) is stored as an 8-bit PNG and read by MMSeg's own
loader; a teacher with more classes is stored as a 16-bit PNG, read back unchanged
by :class:`LoadTeacherLabel`, and scored by an ``IoUMetric`` whose ``ignore_index``
is no class (:func:`label_ignore_index`). Teacher labels never ignore a pixel, so
no class ever equals the ignore index.
"""
import copy
import os

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmengine.logging import print_log
from mmseg.registry import TRANSFORMS

from ..core.teacher_defaults import ANNOTATION_LOADERS

# the most classes an 8-bit label map holds with 255 left to IoUMetric's ignore_index
MAX_UINT8_CLASSES = 255
MAX_CLASSES = 65535  # a 16-bit PNG; 65535 stays the ignore index


def wide_labels(num_classes):
    """Whether ``num_classes`` classes need the 16-bit format (a class 255 exists)."""
    if num_classes > MAX_CLASSES:
        raise ValueError(f'a teacher with {num_classes} classes cannot be stored as labels: '
                         f'at most {MAX_CLASSES} classes fit a 16-bit PNG')
    return num_classes > MAX_UINT8_CLASSES


def label_ignore_index(num_classes):
    """The ``IoUMetric(ignore_index=...)`` for teacher labels of ``num_classes``
    classes: MMSeg's 255 when no class is 255, else ``num_classes`` (never a class)."""
    return num_classes if wide_labels(num_classes) else 255


def write_label(path, label, num_classes):
    """Writes a label map as a PNG (8-bit, or 16-bit for more than 255 classes),
    atomically: a killed run leaves no half-written label."""
    from PIL import Image
    label = np.asarray(label)
    if label.size and (label.min() < 0 or label.max() >= num_classes):
        raise ValueError(f'teacher label {path!r} holds class {int(label.max())} or '
                         f'{int(label.min())}, outside 0 .. {num_classes - 1}')
    dtype = np.uint16 if wide_labels(num_classes) else np.uint8
    tmp = f'{path}.{os.getpid()}.tmp'
    Image.fromarray(label.astype(dtype)).save(tmp, format='PNG')
    os.replace(tmp, path)


@TRANSFORMS.register_module()
class LoadTeacherLabel(BaseTransform):
    """Loads a teacher label map (``seg_map_path``) as it was written, 8 or 16 bits,
    into ``gt_seg_map`` (int64) and adds it to ``seg_fields``: MMSeg's
    ``LoadAnnotations`` for labels of more than 255 classes, which MMSeg's own loader
    would cut to 8 bits."""

    def __init__(self, backend_args=None):
        self.backend_args = copy.deepcopy(backend_args)

    def transform(self, results):
        path = results['seg_map_path']
        label = mmcv.imfrombytes(fileio.get(path, backend_args=self.backend_args),
                                 flag='unchanged')
        if label.ndim != 2:
            raise ValueError(f'LoadTeacherLabel: {path!r} is not a one-channel label map '
                             f'(shape {label.shape})')
        results['gt_seg_map'] = label.astype(np.int64)
        results.setdefault('seg_fields', []).append('gt_seg_map')
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(backend_args={self.backend_args})'


def label_loading_pipeline(pipeline, num_classes, owner='TeacherLabeledDataset'):
    """``pipeline`` with its label loader fitted to teacher labels.

    Teacher labels are already in the teacher's class space, so the inherited
    ``LoadAnnotations``' ``reduce_zero_label`` (ADE20K's is True) is dropped: the
    loader then follows the dataset's ``reduce_zero_label=False``, which MMSeg
    checks only with an ``assert`` (skipped under ``python -O``, where the labels
    would shift silently). For more than 255 classes the loader becomes
    :class:`LoadTeacherLabel`. Each change is logged."""
    out = []
    for t in pipeline:
        t = copy.deepcopy(t)
        if isinstance(t, dict) and t.get('type') in ANNOTATION_LOADERS:
            if wide_labels(num_classes):
                print_log(f'{owner}: {num_classes} classes do not fit MMSeg\'s 8-bit '
                          f'LoadAnnotations; the labels are 16-bit PNGs loaded by '
                          'LoadTeacherLabel', logger='current')
                t = dict(type='LoadTeacherLabel', backend_args=t.get('backend_args'))
            elif t.pop('reduce_zero_label', None):
                print_log(f'{owner}: LoadAnnotations(reduce_zero_label=True) of the '
                          'inherited pipeline is dropped: teacher labels are already in '
                          'the teacher\'s classes (nothing to reduce)', logger='current')
        out.append(t)
    return out


__all__ = ['LoadTeacherLabel', 'write_label', 'wide_labels', 'label_ignore_index',
           'label_loading_pipeline', 'ANNOTATION_LOADERS', 'MAX_UINT8_CLASSES']
