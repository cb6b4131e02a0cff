"""The student of ``tools/compress.py``: a preset (MMSeg zoo configs shipped by both
OpenMMLab lines) or any MMSeg config, adapted to the teacher: its number of classes,
its normalisation and its crop. Each change is logged."""
import os.path as osp

from mmengine.logging import print_log

from ...core.teacher import load_model_config
from ...core.zoo import ZooConfigError, resolve_package_path, split_package_path
from .errors import CompressError

# name -> (config, what it is)
PRESETS = {
    'deeplabv3-mbv2': ('mmseg::mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb2-80k_cityscapes-'
                       '512x1024.py', "the paper's student: DeepLabV3, MobileNetV2, output "
                       'stride 8'),
    'deeplabv3-r18': ('mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
                      'DeepLabV3, ResNet-18, output stride 8'),
    'bisenetv2': ('mmseg::bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py',
                  'BiSeNetV2 (real time)'),
    'stdc1': ('mmseg::stdc/stdc1_4xb12-80k_cityscapes-512x1024.py', 'STDC1 (real time)'),
}
DEFAULT_PRESET = 'deeplabv3-mbv2'
NORM_KEYS = ('mean', 'std', 'bgr_to_rgb', 'rgb_to_bgr')


def student_source(student):
    """The config a ``--student`` value names: a preset's, an ``mmseg::`` config or a
    path; :class:`CompressError` naming the presets otherwise."""
    if student in PRESETS:
        return PRESETS[student][0]
    if split_package_path(student):
        try:
            resolve_package_path(student)
        except (ZooConfigError, FileNotFoundError) as e:
            raise CompressError(str(e)) from None
        return student
    if osp.isfile(student):
        return osp.abspath(student)
    raise CompressError(f'--student {student!r} is neither a preset ({", ".join(PRESETS)}) '
                        'nor an existing config (a path or mmseg::folder/name.py)')


def _heads(model):
    """``[(key, head dict or list)]`` of the heads that predict the classes."""
    return [(k, model[k]) for k in ('decode_head', 'auxiliary_head') if model.get(k)]


def adapt_student(student, teacher, log=True):
    """``(student spec dict, changes)``: ``dict(cfg_path=..., **overrides)`` giving the
    student the teacher's number of classes, normalisation and crop (``teacher`` is a
    :class:`~.teacher_spec.TeacherSpec`). The overrides hold only what differs."""
    cfg_path = student_source(student)
    try:
        model = load_model_config(cfg_path)
    except Exception as e:
        raise CompressError(f'--student {student!r} cannot be read: {type(e).__name__}: '
                            f'{str(e).splitlines()[0]}') from None
    overrides, changes = {}, []
    heads = _heads(model)
    if not heads or _classes_of(heads[0][1]) is None:
        raise CompressError(f'--student {student!r} cannot take the teacher\'s '
                            f'{teacher.num_classes} classes: its model has no decode_head '
                            'with num_classes')
    for key, head in heads:
        if isinstance(head, (list, tuple)):
            new = []
            for i, h in enumerate(head):
                _check_binary(student, h, teacher.num_classes)
                if h.get('num_classes') != teacher.num_classes:
                    changes.append(f'{key}[{i}].num_classes {h.get("num_classes")} -> '
                                   f'{teacher.num_classes}')
                new.append(dict(h, num_classes=teacher.num_classes))
            if any('->' in c and c.startswith(key) for c in changes):
                overrides[key] = new
        else:
            _check_binary(student, head, teacher.num_classes)
            if head.get('num_classes') != teacher.num_classes:
                changes.append(f'{key}.num_classes {head.get("num_classes")} -> '
                               f'{teacher.num_classes}')
                overrides[key] = dict(num_classes=teacher.num_classes)
    dp = dict(model.get('data_preprocessor') or {})
    new_dp = {}
    for k in NORM_KEYS:
        if k in teacher.preprocessor and list(_as_list(dp.get(k))) != list(
                _as_list(teacher.preprocessor[k])):
            new_dp[k] = teacher.preprocessor[k]
            changes.append(f'data_preprocessor.{k} {dp.get(k)} -> {teacher.preprocessor[k]} '
                           "(the teacher's normalisation)")
    crop = list(teacher.crop)
    if list(_as_list(dp.get('size'))) != crop:
        new_dp['size'] = tuple(crop)
        changes.append(f'data_preprocessor.size {dp.get("size")} -> {tuple(crop)} (the crop)')
    if new_dp:
        overrides['data_preprocessor'] = new_dp
    if model.get('pretrained') or _init_cfg(model):
        overrides['pretrained'] = None
        overrides.setdefault('backbone', {})['init_cfg'] = None
        changes.append('backbone init_cfg/pretrained -> None (no ImageNet download; DFSS '
                       'trains the student from the teacher alone)')
    if log:
        for c in changes:
            print_log(f'compress: student {student}: {c}', logger='current')
    return dict(cfg_path=cfg_path, **overrides), changes


def _init_cfg(model):
    return (model.get('backbone') or {}).get('init_cfg')


def _as_list(v):
    return list(v) if isinstance(v, (list, tuple)) else ([] if v is None else [v])


def _classes_of(head):
    if isinstance(head, (list, tuple)):
        return head[-1].get('num_classes') if head else None
    return head.get('num_classes')


def _check_binary(student, head, num_classes):
    """A head with ``out_channels=1`` predicts one binary map: it cannot take C > 2."""
    if head.get('out_channels') == 1 and num_classes > 2:
        raise CompressError(f'--student {student!r} cannot take the teacher\'s {num_classes} '
                            'classes: its head is binary (out_channels=1)')
