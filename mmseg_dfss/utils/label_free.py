"""Label-free variants of DFSS configs: validate on teacher labels, not ground truth.

A variant is a short config file that inherits a DFSS config and replaces its
``val_dataloader`` dataset with a :class:`TeacherLabeledDataset`. It names no teacher:
the dataset takes the distiller's (``model.teacher``, through
:func:`~mmseg_dfss.core.shared_teacher.resolve_shared`), and its evaluation pipeline
and class names default to the teacher config's test pipeline and dataset, so a
variant states them only where the recipe's validation set differs. Its images are, by
default, the pool images ADS ranks just after the training eps (``ADSHeldOutDataset``,
which takes the training ``ADSDataset``'s pool, scores and eps: the closest to the
original domain the pool offers that the student never trains on), or a folder the
user names. ``save_best='mIoU'`` then picks the checkpoint that agrees best with the
teacher.
"""
import os.path as osp

from mmengine.config import Config

from ..core.atomic_file import atomic_write
from ..core.shared_teacher import HELD_OUT_KEYS, model_teacher, resolve_shared
from ..core.teacher_defaults import teacher_metainfo, teacher_test_pipeline
from ..datasets.teacher_label_format import label_ignore_index, wide_labels

# ADSDataset keys the held-out set copies from the training set (same scores, same cache)
ADS_KEYS = HELD_OUT_KEYS[1:]
DEFAULT_NUM_IMAGES = 500
DEFAULT_CACHE_DIR = 'work_dirs/teacher_labels'
HEADER = """# Label-free validation of the recipe below: its mIoU is AGREEMENT WITH THE TEACHER,
# not accuracy (docs/label_free.md). Written by tools/label_free_config.py."""


def _plain(obj):
    return obj.to_dict() if hasattr(obj, 'to_dict') else obj


def _val_settings(cfg, config):
    """``{key: text}`` of the TeacherLabeledDataset settings a variant must state: the
    recipe's evaluation pipeline and classes where they are not the teacher config's."""
    teacher = model_teacher(cfg).get('teacher')
    val = (cfg.get('val_dataloader') or {}).get('dataset') or {}
    try:  # a teacher config path relative to another folder: state the recipe's own
        theirs, ours = teacher_test_pipeline(teacher)[0], teacher_metainfo(teacher)[0]
    except FileNotFoundError:
        theirs = ours = None
    ours = (ours or {}).get('classes')
    out = {}
    pipeline = val.get('pipeline')
    if pipeline and [_plain(t) for t in pipeline] != theirs:
        out['pipeline'] = '{{_base_.val_dataloader.dataset.pipeline}}'
    classes = _classes(val)
    if classes is not None and (ours is None or tuple(ours) != classes):
        if val.get('metainfo'):
            out['metainfo'] = '{{_base_.val_dataloader.dataset.metainfo}}'
        else:
            out['metainfo_from'] = repr(val.get('type'))
    if classes is None and ours is None:
        raise ValueError(f'{config}: the class names are unknown: neither '
                         'val_dataloader.dataset nor the teacher config names them')
    return out, len(classes if classes is not None else ours)


def label_free_config_text(config, images=None, num_images=DEFAULT_NUM_IMAGES,
                           cache_dir=DEFAULT_CACHE_DIR, base_path=None):
    """The text of a config file that inherits ``config`` and validates on teacher
    labels. ``images``: a folder of validation images (default: the ADS held-out
    ranks of the training pool). ``base_path``: how the file names ``config`` in its
    ``_base_`` (default: ``config`` as given)."""
    cfg = Config.fromfile(config)
    if not model_teacher(cfg).get('teacher'):
        raise ValueError(f'{config}: model is not a DataFreeDistiller with a teacher; a '
                         "label-free variant needs the distiller's teacher")
    if images is None:
        train = (cfg.get('train_dataloader') or {}).get('dataset') or {}
        if train.get('type') != 'ADSDataset':
            raise ValueError(f'{config}: train_dataloader.dataset is not an ADSDataset, so '
                             'there are no ADS held-out images; name a folder of images')
        source = f"dict(type='ADSHeldOutDataset', num_samples={int(num_images)})"
    else:
        source = f"dict(type='UnlabeledImageDataset', data_prefix=dict(img_path={images!r}))"
    settings, num_classes = _val_settings(cfg, config)
    if cache_dir != DEFAULT_CACHE_DIR:
        settings['cache_dir'] = repr(cache_dir)
    lines = [HEADER, f'_base_ = [{(base_path or config)!r}]',
             "val_dataloader = dict(dataset=dict(_delete_=True, type='TeacherLabeledDataset',",
             f'    dataset={source}']
    lines[-1] += ''.join(f',\n    {k}={v}' for k, v in settings.items()) + '))'
    if wide_labels(num_classes):  # class 255 exists: IoUMetric must not ignore it
        lines.append("val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'], "
                     f'ignore_index={label_ignore_index(num_classes)})')
    else:
        lines.append("val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])")
    lines.append("default_hooks = dict(checkpoint=dict(save_best='mIoU', rule='greater'))")
    return '\n'.join(lines) + '\n'


def _classes(val):
    """The class names of a validation dataset config (its ``metainfo``, else its
    registered type's ``METAINFO``), or None."""
    from mmseg.registry import DATASETS
    classes = (val.get('metainfo') or {}).get('classes')
    if classes is None:
        cls = DATASETS.get(val.get('type') or '')
        classes = getattr(cls, 'METAINFO', {}).get('classes') if cls is not None else None
    return tuple(classes) if classes else None


def write_label_free_config(config, out, **kwargs):
    """Writes :func:`label_free_config_text` to ``out`` (its ``_base_`` relative to
    ``out``'s folder) and returns ``out``."""
    rel = osp.relpath(osp.abspath(config), osp.dirname(osp.abspath(out)))
    rel = rel if rel.startswith('.') else './' + rel
    text = label_free_config_text(config, base_path=rel, **kwargs)
    with atomic_write(out) as f:
        f.write(text)
    return out


def teacher_of(cfg, checkpoint=None):
    """``(teacher spec, checkpoint)`` of a config: a DFSS config's distiller teacher, or
    the config's own model (a teacher config; ``checkpoint`` then names its weights)."""
    model = cfg.get('model') or {}
    if model.get('type') == 'DataFreeDistiller':
        return model['teacher'], checkpoint or model.get('teacher_checkpoint')
    if not model:
        raise ValueError('the config has no model')
    if checkpoint is None:
        raise ValueError('the config is not a DFSS config (model.type is '
                         f'{model.get("type")!r}): give the teacher checkpoint')
    spec = dict(model)
    if 'data_preprocessor' not in spec and cfg.get('data_preprocessor'):
        spec['data_preprocessor'] = cfg.data_preprocessor
    return spec, checkpoint


def image_source(spec, cfg=None, num_images=DEFAULT_NUM_IMAGES):
    """The dataset config of an image SPEC: a folder of images (searched recursively),
    a text file of image paths (one a line), or ``held-out``: the ``num_images`` pool
    images ADS ranks after a DFSS config's training eps."""
    if spec == 'held-out':
        train = ((cfg or {}).get('train_dataloader') or {}).get('dataset') or {}
        if train.get('type') != 'ADSDataset':
            raise ValueError("--images held-out needs a DFSS config whose train_dataloader."
                             'dataset is an ADSDataset')
        src = {k: train[k] for k in ADS_KEYS if k in train}
        src.update(type='ADSHeldOutDataset', dataset=train['dataset'],
                   num_skipped=train['num_samples'], num_samples=int(num_images))
        return src
    if osp.isdir(spec):
        return dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=spec))
    if osp.isfile(spec):
        return dict(type='UnlabeledImageDataset', ann_file=spec, data_prefix=dict(img_path=''))
    raise FileNotFoundError(f'--images {spec!r}: no such folder or list file (or '
                            "'held-out' for the ADS held-out pool images)")


def teacher_labeled_dataset(cfg, images, checkpoint=None, num_images=DEFAULT_NUM_IMAGES,
                            cache_dir=DEFAULT_CACHE_DIR, **kwargs):
    """The :class:`TeacherLabeledDataset` config of ``images`` (see :func:`image_source`)
    labelled by ``cfg``'s teacher (``checkpoint``, ``allow_random_teacher`` in
    ``kwargs``: for the distiller's teacher, so they reach the held-out set too), with
    ``cfg``'s evaluation pipeline and classes (a label-free config's own; unset: the
    teacher config's)."""
    model = cfg.get('model') or {}
    if model.get('type') == 'DataFreeDistiller':
        if checkpoint is not None:
            model['teacher_checkpoint'] = checkpoint
        if kwargs.get('allow_random_teacher'):
            model['allow_random_teacher'] = True
        resolve_shared(cfg)
    teacher, ckpt = teacher_of(cfg, checkpoint)
    val = ((cfg.get('val_dataloader') or cfg.get('test_dataloader') or {}).get('dataset')
           or {})
    ds = dict(type='TeacherLabeledDataset', dataset=image_source(images, cfg, num_images),
              teacher=teacher, teacher_checkpoint=ckpt, cache_dir=cache_dir,
              pipeline=val.get('pipeline'))  # None: the teacher config's test pipeline
    if val.get('metainfo'):
        ds['metainfo'] = val['metainfo']
    elif val.get('type') == 'TeacherLabeledDataset':
        if val.get('metainfo_from'):
            ds['metainfo_from'] = val['metainfo_from']
    elif _classes(val) is not None:
        ds['metainfo_from'] = val.get('type')
    ds.update(kwargs)
    return ds


def load_student(cfg, checkpoint, device):
    """The student of the DFSS config with the checkpoint's weights: a distiller's
    ``student.*`` keys, or an exported student's own; strict."""
    from ..core.teacher import build_segmentor, checkpoint_state_dict, freeze
    from ..models.student_export import student_config
    model = build_segmentor(student_config(cfg).model)
    state = checkpoint_state_dict(checkpoint, 'student checkpoint')
    if any(k.startswith('student.') for k in state):
        state = {k[len('student.'):]: v for k, v in state.items() if k.startswith('student.')}
    own = model.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing or unexpected:
        raise KeyError(f'checkpoint {checkpoint!r} does not match the student of the config: '
                       f'missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}')
    model.load_state_dict(state, strict=True)
    return freeze(model).to(device)


__all__ = ['label_free_config_text', 'write_label_free_config', 'teacher_of', 'image_source',
           'teacher_labeled_dataset', 'load_student']
