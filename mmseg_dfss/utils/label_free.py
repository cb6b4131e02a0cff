"""Label-free variants of DFSS configs: validate on teacher labels, not ground truth.

A variant is a short config file that inherits a DFSS config and replaces its
``val_dataloader`` dataset with a :class:`TeacherLabeledDataset` whose teacher,
checkpoint and evaluation pipeline are the base config's own (by ``{{_base_...}}``
reference, so the variant follows the recipe). Its images are, by default, the
pool images ADS ranks just after the training eps (``ADSHeldOutDataset``: the
closest to the original domain the pool offers that the student never trains on),
or a folder the user names. ``save_best='mIoU'`` then picks the checkpoint that
agrees best with the teacher.
"""
import os.path as osp

from mmengine.config import Config

from ..datasets.teacher_label_format import label_ignore_index, wide_labels

# ADSDataset keys the held-out set copies from the training set (same scores, same cache)
ADS_KEYS = ('teacher', 'teacher_checkpoint', 'strategy', 'bn_layers', 'score_pipeline',
            'score_batch_size', 'score_num_workers', 'cache_dir', 'seed', 'max_unreadable',
            'source_names')
DEFAULT_NUM_IMAGES = 500
DEFAULT_CACHE_DIR = 'work_dirs/teacher_labels'


def _ref(key):
    return '{{_base_.' + key + '}}'


def label_free_config_text(config, images=None, num_images=DEFAULT_NUM_IMAGES,
                           cache_dir=DEFAULT_CACHE_DIR, base_path=None):
    """The text of a config file that inherits ``config`` and validates on teacher
    labels. ``images``: a folder of validation images (default: the ADS held-out
    ranks of the training pool). ``base_path``: how the file names ``config`` in its
    ``_base_`` (default: ``config`` as given)."""
    cfg = Config.fromfile(config)
    model = cfg.get('model') or {}
    if model.get('type') != 'DataFreeDistiller':
        raise ValueError(f'{config}: model.type is {model.get("type")!r}, not '
                         "'DataFreeDistiller'; a label-free variant needs the distiller's "
                         'teacher')
    val = (cfg.get('val_dataloader') or {}).get('dataset') or {}
    pipeline = val.get('pipeline')
    if not pipeline:
        raise ValueError(f'{config}: val_dataloader.dataset.pipeline is missing; it is the '
                         'evaluation pipeline the teacher labels are made with')
    if val.get('metainfo'):
        classes = f"metainfo={_ref('val_dataloader.dataset.metainfo')},"
    else:
        classes = f"metainfo_from={val.get('type')!r},  # the class names and palette"
    evaluator = "val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])"
    num_classes = _num_classes(val)
    if wide_labels(num_classes):  # class 255 exists: IoUMetric must not ignore it
        evaluator = evaluator[:-1] + f', ignore_index={label_ignore_index(num_classes)})'
    lines = [
        '# Label-free validation: the student is scored against the frozen teacher\'s',
        '# predictions (TeacherLabeledDataset), not against ground truth. The mIoU it',
        '# logs is AGREEMENT WITH THE TEACHER, not accuracy. Written by',
        '# tools/label_free_config.py; see docs/label_free.md.',
        f'_base_ = [{(base_path or config)!r}]',
    ]
    if images is None:
        train = (cfg.get('train_dataloader') or {}).get('dataset') or {}
        if train.get('type') != 'ADSDataset':
            raise ValueError(f'{config}: train_dataloader.dataset is not an ADSDataset, so '
                             'there are no ADS held-out images; name a folder of images')
        source = ['dict(', "    type='ADSHeldOutDataset',",
                  f"    dataset={_ref('train_dataloader.dataset.dataset')},",
                  f"    num_skipped={_ref('train_dataloader.dataset.num_samples')},"
                  '  # the training eps',
                  f'    num_samples={int(num_images)},  # the images ranked after them']
        source += [f"    {k}={_ref('train_dataloader.dataset.' + k)},"
                   for k in ADS_KEYS if k in train]
        source.append(')')
    else:
        source = ['dict(', "    type='UnlabeledImageDataset',",
                  f'    data_prefix=dict(img_path={images!r}),', ')']
    source = '\n'.join('        ' + s for s in source).strip()
    lines += [
        'val_dataloader = dict(',
        '    dataset=dict(',
        '        _delete_=True,',
        "        type='TeacherLabeledDataset',",
        f'        dataset={source},',
        f"        teacher={_ref('model.teacher')},",
        f"        teacher_checkpoint={_ref('model.teacher_checkpoint')},",
        f'        cache_dir={cache_dir!r},',
        f"        pipeline={_ref('val_dataloader.dataset.pipeline')},",
        f'        {classes}',
        '    ))',
        evaluator,
        "default_hooks = dict(checkpoint=dict(save_best='mIoU', rule='greater'))",
    ]
    return '\n'.join(lines) + '\n'


def _num_classes(val):
    """The number of classes of a validation dataset config (its ``metainfo``, else its
    registered type's ``METAINFO``), as TeacherLabeledDataset will count them."""
    from mmseg.registry import DATASETS
    classes = (val.get('metainfo') or {}).get('classes')
    if classes is None:
        cls = DATASETS.get(val.get('type') or '')
        classes = getattr(cls, 'METAINFO', {}).get('classes') if cls is not None else None
    if not classes:
        raise ValueError(f'the class names of val_dataloader.dataset ({val.get("type")!r}) '
                         'are unknown: give it metainfo=dict(classes=...)')
    return len(classes)


def write_label_free_config(config, out, **kwargs):
    """Writes :func:`label_free_config_text` to ``out`` (its ``_base_`` relative to
    ``out``'s folder) and returns ``out``."""
    rel = osp.relpath(osp.abspath(config), osp.dirname(osp.abspath(out)))
    rel = rel if rel.startswith('.') else './' + rel
    text = label_free_config_text(config, base_path=rel, **kwargs)
    with open(out, 'w') as f:
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
    labelled by ``cfg``'s teacher, with ``cfg``'s evaluation pipeline and classes."""
    teacher, ckpt = teacher_of(cfg, checkpoint)
    val = ((cfg.get('val_dataloader') or cfg.get('test_dataloader') or {}).get('dataset')
           or {})
    pipeline = val.get('pipeline')
    if not pipeline:
        raise ValueError('the config has no val_dataloader.dataset.pipeline (the evaluation '
                         'pipeline the teacher labels are made with)')
    ds = dict(type='TeacherLabeledDataset', dataset=image_source(images, cfg, num_images),
              teacher=teacher, teacher_checkpoint=ckpt, cache_dir=cache_dir,
              pipeline=pipeline)
    if val.get('metainfo'):
        ds['metainfo'] = val['metainfo']
    else:
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
