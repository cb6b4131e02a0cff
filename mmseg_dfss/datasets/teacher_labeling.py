"""The labelling work behind :class:`TeacherLabeledDataset`: a frozen teacher labels
each image once, shared over the ranks, into a cache keyed by everything a label
depends on."""
import copy
import hashlib
import json
import os
import os.path as osp
from dataclasses import dataclass, field

import torch
from mmengine.dist import all_gather_object, broadcast_object_list, get_dist_info
from mmengine.logging import print_log
from mmengine.utils import ProgressBar
from mmseg.registry import TRANSFORMS
from torch.utils.data import DataLoader

from ..core.atomic_file import atomic_write
from ..core.fingerprint import file_stamp, jsonable, setup_fingerprint
from ..core.pool_errors import (ScoreIOError, ScorePipelineError, SetupMismatchError,
                                TooManyUnreadableError)
from ..core.score_view import ScoreView, collate_records
from ..core.teacher import build_frozen_segmentor, describe_model_spec, teacher_record
from .teacher_label_format import write_label

# part of every label fingerprint: bump when the way a label is made changes
LABELER_VERSION = 1


class LabelSizeError(ValueError):
    """A teacher label whose size is not the validation image's original size."""


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


def image_key(path, stamp):
    """sha256 of an image file's identity: its path and its (size, mtime) stamp, as in
    the ADS score cache; an image overwritten in place gets a new key."""
    return hashlib.sha256(json.dumps([osp.abspath(path), stamp]).encode()).hexdigest()


def image_loader(pipeline):
    """The image-loading transform of ``pipeline`` (its first ``LoadImage*``), or None."""
    for t in pipeline:
        if isinstance(t, dict) and 'LoadImage' in str(t.get('type', '')):
            return copy.deepcopy(t)
    return None


def _write_text(path, text):
    with atomic_write(path) as f:
        f.write(text)


@dataclass
class LabelRun:
    """What a labelling run leaves: the label folder, every image's path and key, the
    indices labelled by this process, and the unreadable images (index -> error)."""
    label_dir: str
    paths: list
    keys: list
    labelled_here: list = field(default_factory=list)
    num_new: int = 0


class TeacherLabeler:
    """Labels images with a frozen teacher into ``cache_dir/teacher-<setup[:16]>/``.

    A label is the teacher's ``test_step`` prediction (its own ``data_preprocessor``
    and ``test_cfg``) of the image after ``label_pipeline``, at the image's original
    size. The folder name hashes :meth:`setup_parts` (teacher config and weights
    digest, label pipeline, class count, labeller version); the file name hashes the
    image's path and file stamp. Missing labels are made, present ones never rewritten.

    Under torch.distributed rank 0 lists the missing labels and each rank labels a
    share (``cache_dir`` must be shared). Unreadable images get a ``.unreadable`` note.

    ``size_loader``: the evaluation pipeline's image loader when ``label_pipeline``
    loads images another way; every label is then checked against the image size it
    gives (:class:`LabelSizeError` otherwise).
    """

    def __init__(self, teacher, teacher_checkpoint, classes, label_pipeline, cache_dir,
                 num_workers=0, max_unreadable=0.05, device='cpu', progress=True,
                 allow_random_teacher=False, size_loader=None, owner='TeacherLabeledDataset'):
        self.teacher_cfg = teacher
        self.teacher_checkpoint = teacher_checkpoint
        self.classes = tuple(classes)
        self.label_pipeline = label_pipeline
        self.cache_dir = cache_dir
        self.num_workers = num_workers
        self.max_unreadable = max_unreadable
        self.device = device
        self.progress = progress
        self.allow_random_teacher = allow_random_teacher
        self.size_loader = size_loader
        self.owner = owner
        self.teacher_record = None

    def build_teacher(self):
        teacher = build_frozen_segmentor(self.teacher_cfg, self.teacher_checkpoint, 'teacher',
                                         allow_random_teacher=self.allow_random_teacher)
        n_t, classes = teacher_num_classes(teacher), self.classes
        if n_t != len(classes):
            raise ValueError(
                f'{self.owner}: the teacher ({describe_model_spec(self.teacher_cfg)}) '
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
                    label_pipeline=jsonable(self.label_pipeline),
                    num_classes=len(self.classes))

    def label(self, source, paths):
        """Makes the missing labels of ``source``'s images (``paths``, in order),
        shared over the ranks; returns a :class:`LabelRun`."""
        keys = [image_key(p, file_stamp(p)) for p in paths]
        teacher = self.build_teacher()
        parts = self.setup_parts()
        fp = setup_fingerprint(parts)
        run = LabelRun(osp.join(self.cache_dir, f'teacher-{fp[:16]}'), paths, keys)
        rank, world = get_dist_info()
        if world > 1:
            self._check_ranks_agree(fp, keys)
        todo = self._missing(run, parts) if rank == 0 else None
        if world > 1:
            box = [todo]
            broadcast_object_list(box, src=0)
            todo = box[0]
        exc = None
        try:
            if todo:
                if rank == 0:
                    print_log(f'{self.owner}: the teacher labels {len(todo)} of {len(paths)} '
                              f'images into {run.label_dir}', logger='current')
                self._label(teacher, source, todo[rank::world], run, rank)
        except Exception as e:  # every rank must hear of it, or the others wait forever
            exc = e
        if world > 1:
            errs = all_gather_object(None if exc is None else (type(exc).__name__, str(exc)))
            first = next(((r, e) for r, e in enumerate(errs) if e is not None), None)
            if exc is None and first is not None:
                raise RuntimeError(f'{self.owner}: labelling failed on rank {first[0]}: '
                                   f'{first[1][0]}: {first[1][1]}')
        if exc is not None:
            raise exc
        run.num_new = len(todo)
        return run

    def _check_ranks_agree(self, fp, keys):
        seen = all_gather_object((fp, setup_fingerprint(keys)))
        bad = [r for r, s in enumerate(seen) if s != seen[0]]
        if bad:
            what = ('teacher/label setup' if seen[bad[0]][0] != seen[0][0] else
                    'images (paths or file stamps)')
            raise SetupMismatchError(
                f'{self.owner}: rank {bad[0]} and rank 0 see different {what}; all ranks '
                'must label the same images with the same teacher')

    def _missing(self, run, parts):
        """Rank 0: creates the label folder (with its meta.json) and lists the images
        with neither a label nor an unreadable note."""
        os.makedirs(run.label_dir, exist_ok=True)
        meta = osp.join(run.label_dir, 'meta.json')
        if not osp.exists(meta):
            _write_text(meta, json.dumps(dict(
                setup=parts, teacher=self.teacher_record['spec'],
                teacher_checkpoint=self.teacher_checkpoint), indent=1))
        return [i for i, k in enumerate(run.keys)
                if not osp.exists(osp.join(run.label_dir, k + '.png'))
                and not osp.exists(osp.join(run.label_dir, k + '.unreadable'))]

    def _label(self, teacher, source, indices, run, rank):
        """Labels ``indices`` (this rank's share). Pipeline errors and lasting I/O
        errors stop; unreadable images get a note."""
        teacher = teacher.to(self.device)
        view = ScoreView(source, indices, self.label_pipeline)
        loader = DataLoader(view, batch_size=1, shuffle=False, collate_fn=collate_records,
                            num_workers=self.num_workers)
        bar = ProgressBar(len(indices)) if self.progress and rank == 0 and indices else None
        bad, limit = 0, self.max_unreadable * len(run.paths)
        for (item, ) in loader:
            i = item['index']
            if self._skip(item, run) is not None:
                bad += 1
                if bad > limit:
                    raise TooManyUnreadableError(
                        f'{self.owner}: at least {bad} of {len(run.paths)} images unreadable '
                        f'- wrong data_root? (more than max_unreadable='
                        f'{self.max_unreadable:g}; e.g. {run.paths[i]!r})')
            else:
                with torch.no_grad():
                    pred = teacher.test_step(dict(inputs=[item['inputs']],
                                                  data_samples=[item['data_samples']]))[0]
                label = pred.pred_sem_seg.data[0].cpu().numpy()
                self._check_size(run.paths[i], label.shape)
                write_label(osp.join(run.label_dir, run.keys[i] + '.png'), label,
                            len(self.classes))
                run.labelled_here.append(i)
            if bar is not None:
                bar.update()
        if bar is not None:
            print()

    def _skip(self, item, run):
        """None for a loaded image; the error of an unreadable one (noted); raises for
        a pipeline error or a lasting I/O error."""
        kind, i = item.get('kind'), item['index']
        if kind == 'pipeline':
            raise ScorePipelineError(
                f'{self.owner}: {item["error"]}. This is a label_pipeline/config error, not '
                'a bad image: labelling stopped.')
        if kind == 'transient':
            raise ScoreIOError(f'{self.owner}: transient I/O error: {item["error"]}; run '
                               'again to resume')
        if kind != 'unreadable':
            return None
        print_log(f'{self.owner}: skipping unreadable image {run.paths[i]!r}: '
                  f'{item["error"]}', logger='current', level=30)
        _write_text(osp.join(run.label_dir, run.keys[i] + '.unreadable'), item['error'])
        return item['error']

    def _check_size(self, path, shape):
        if self.size_loader is None:
            return
        results = TRANSFORMS.build(self.size_loader)(dict(img_path=path))
        want = tuple(results['img'].shape[:2])
        if tuple(shape) != want:
            raise LabelSizeError(
                f'{self.owner}: the teacher label of {path!r} is {shape[0]}x{shape[1]} but '
                f'the evaluation pipeline loads the image as {want[0]}x{want[1]} '
                f'({self.size_loader.get("type")}): label_pipeline loads the image '
                'differently (orientation, size); give it the evaluation pipeline\'s '
                'image loader')


__all__ = ['TeacherLabeler', 'LabelRun', 'LabelSizeError', 'LABELER_VERSION',
           'teacher_num_classes', 'image_key', 'image_loader']
