"""What ``tools/compress.py`` reads from a TEACHER argument: a zoo model name (its
config and weights from the installed MMSeg's metafiles), an ``mmseg::`` config or a
config path; and from that config the classes, normalisation, crop, test pipeline
and the BN layers ADS can score."""
import copy
import os.path as osp
from dataclasses import dataclass, field

from mmengine.config import Config
from mmengine.logging import print_log

from ...core.teacher import load_model_config
from ...core.teacher_defaults import teacher_metainfo
from ...core.zoo import (ZooConfigError, check_config_bases, resolve_package_path,
                         split_package_path, zoo_model)
from .errors import CompressError


@dataclass
class TeacherSpec:
    """A resolved teacher: ``cfg_path`` (absolute path or ``mmseg::``), ``checkpoint``
    (path, URL or None), and what the student and the datasets take from it."""
    given: str
    cfg_path: str
    checkpoint: object
    num_classes: int
    classes: list
    preprocessor: dict
    crop: tuple
    test_pipeline: list = field(default_factory=list)
    source: str = ''
    train_resize: dict = None


def _config_file(spec):
    if split_package_path(spec):
        return resolve_package_path(spec)
    return osp.abspath(spec)


def resolve_teacher_name(spec):
    """``(cfg_path, weights, source)`` of TEACHER: a config path, an ``mmseg::``
    config, or a model name of the installed metafiles (unknown: one line with the
    five closest names)."""
    if split_package_path(spec):
        try:
            resolve_package_path(spec)
        except (ZooConfigError, FileNotFoundError) as e:
            raise CompressError(str(e)) from None
        return spec, None, 'an mmseg:: config'
    if spec.endswith('.py') or osp.sep in spec:
        if not osp.isfile(spec):
            raise CompressError(f'teacher config {spec!r} does not exist')
        return osp.abspath(spec), None, 'a config file'
    try:
        cfg_path, weights = zoo_model(spec)
    except ZooConfigError as e:
        raise CompressError(str(e)) from None
    return cfg_path, weights, f'the zoo model {spec!r} ({cfg_path})'


def _num_classes(model):
    heads = model.get('decode_head')
    if isinstance(heads, (list, tuple)):
        heads = heads[-1]
    return None if not heads else heads.get('num_classes')


def _test_pipeline(cfg):
    for key in ('test_dataloader', 'val_dataloader'):
        pipeline = ((cfg.get(key) or {}).get('dataset') or {}).get('pipeline')
        if pipeline:
            return [dict(t) for t in copy.deepcopy(pipeline)]
    return list(copy.deepcopy(cfg.get('test_pipeline') or []))


def _train_resize(cfg):
    """``{scale, ratio_range}`` of the teacher's own training ``RandomResize`` (what its
    images looked like in training, e.g. the zoo's (2048, 1024) x (0.5, 2.0) on
    Cityscapes), or None when its config has no training pipeline."""
    pipeline = ((cfg.get('train_dataloader') or {}).get('dataset') or {}).get('pipeline') \
        or cfg.get('train_pipeline') or []
    for t in pipeline:
        if isinstance(t, dict) and t.get('type') == 'RandomResize' and t.get('scale'):
            return dict(scale=tuple(int(v) for v in t['scale']),
                        ratio_range=tuple(float(v) for v in t.get('ratio_range') or (1, 1)))
    return None


def _crop_of(preprocessor, pipeline):
    size = (preprocessor or {}).get('size')
    if size:
        return tuple(int(s) for s in size)
    for t in pipeline:
        if t.get('type') == 'Resize' and t.get('scale') and not t.get('keep_ratio', False):
            w, h = t['scale']  # MMSeg's Resize scale is (w, h)
            return int(h), int(w)
    return None


def class_names(cfg_path, num_classes):
    """``(names, where)``: the teacher's dataset metainfo, else its zoo metafile's
    training dataset (:func:`~mmseg_dfss.core.teacher_defaults.teacher_metainfo`, as the
    teacher-labelled datasets take them), else ``class_0 .. class_{C-1}``."""
    info, where = teacher_metainfo(cfg_path, num_classes, 'compress')
    if info is not None:
        return [str(c) for c in info['classes']], where
    return [f'class_{i}' for i in range(num_classes)], 'none given: class_0 .. class_{C-1}'


def read_teacher(given, cfg_path, checkpoint, crop=None, source=''):
    """The :class:`TeacherSpec` of a teacher config (read, never trained on)."""
    try:
        check_config_bases(cfg_path)
        cfg = Config.fromfile(_config_file(cfg_path))
        model = load_model_config(cfg_path)
    except ZooConfigError as e:
        raise CompressError(str(e)) from None
    except Exception as e:  # a config MMEngine cannot read: name it
        raise CompressError(f'teacher config {cfg_path!r} cannot be read: '
                            f'{type(e).__name__}: {str(e).splitlines()[0]}') from None
    num_classes = _num_classes(model)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise CompressError(f'teacher config {cfg_path!r}: model.decode_head.num_classes is '
                            f'{num_classes!r}; a segmentation teacher must name its classes')
    preprocessor = dict(model.get('data_preprocessor') or cfg.get('data_preprocessor') or {})
    pipeline = _test_pipeline(cfg)
    crop = tuple(crop) if crop else _crop_of(preprocessor, pipeline)
    if crop is None:
        raise CompressError(f'teacher config {cfg_path!r} gives no crop size (no '
                            'data_preprocessor.size and no fixed-size Resize in its test '
                            'pipeline): give --crop H W')
    classes, where = class_names(cfg_path, num_classes)
    resize = _train_resize(cfg)
    print_log(f'compress: teacher {source or cfg_path}: {num_classes} classes (names from '
              f'{where}), crop {crop[0]}x{crop[1]}, pool images resized '
              + (f'as the teacher trained: scale {resize["scale"]} x {resize["ratio_range"]}'
                 if resize else 'around the crop: scale (w, h) of the crop x (0.5, 2.0)'),
              logger='current')
    return TeacherSpec(given=given, cfg_path=cfg_path, checkpoint=checkpoint,
                       num_classes=num_classes, classes=classes, preprocessor=preprocessor,
                       crop=crop, test_pipeline=pipeline, source=source, train_resize=resize)


def scored_bn_layers(teacher_cfg_path):
    """``'backbone'``, or ``'all'`` with a log line when the teacher's backbone has no
    BatchNorm (SegFormer's MiT: its decode head's BN layers are scored); a teacher with
    no BN layer at all is a :class:`CompressError`. Builds the teacher with random
    weights (no checkpoint read)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    from ...core.teacher import build_segmentor
    model = build_segmentor(load_model_config(teacher_cfg_path))
    backbone = [m for m in model.backbone.modules() if isinstance(m, _BatchNorm)]
    if backbone:
        return 'backbone'
    anywhere = [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)]
    if not anywhere:
        raise CompressError(f'teacher {teacher_cfg_path!r} has no BatchNorm layer: ADS and '
                            'the DFSS loss read BN statistics (DFSS Eq. 9), so this teacher '
                            'cannot be distilled data-free')
    print_log(f'compress: the teacher backbone has no BatchNorm; ADS scores the '
              f'{len(anywhere)} BN layers it has ({anywhere[0]} ...)', logger='current')
    return 'all'
