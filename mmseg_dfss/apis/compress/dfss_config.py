"""``DIR/dfss_config.py``: the DFSS config a compress run trains with, written first.
It is the artefact a person reads and edits; ``tools/train.py DIR/dfss_config.py``
runs it alone. Every cache it names lives under ``DIR``."""
import copy
import os
import pprint

from ...core.atomic_file import atomic_write
from ...core.teacher import load_model_config
from .stage_stamp import digest, finished, mark_finished
from .teacher_spec import scored_bn_layers

CONFIG_NAME = 'dfss_config.py'
NUM_CHECKPOINTS = 5  # checkpoints (and validations) over a run: the resume points


def _without_annotations(pipeline):
    return [t for t in pipeline if t.get('type') != 'LoadAnnotations']


def score_pipeline(teacher):
    """The teacher's test pipeline without labels, else the image at native size."""
    if teacher.test_pipeline:
        return _without_annotations(teacher.test_pipeline)
    return [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]


def eval_pipeline(teacher):
    """The teacher's test pipeline with ``LoadAnnotations`` (the teacher labels)."""
    pipeline = copy.deepcopy(teacher.test_pipeline or score_pipeline(teacher))
    if not any(t.get('type') == 'LoadAnnotations' for t in pipeline):
        pipeline.insert(len(pipeline) - 1, dict(type='LoadAnnotations'))
    return pipeline


def train_pipeline(crop):
    """The pool's training view: MMSeg's usual augmentation around the crop, no labels."""
    h, w = crop
    return [dict(type='LoadImageFromFile'),
            dict(type='RandomResize', scale=(w, h), ratio_range=(0.5, 2.0), keep_ratio=True),
            dict(type='RandomCrop', crop_size=(h, w)),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackSegInputs')]


def pool_config(plan, pipeline):
    """The pool dataset: one, or MMEngine's ConcatDataset of several."""
    # serialize_data=False: MMEngine's serialisation runs gc.collect() per build
    pools = [dict(ds, pipeline=pipeline, serialize_data=False) for _, ds, _ in plan.pools]
    if len(pools) == 1:
        return pools[0], None
    return dict(type='ConcatDataset', datasets=pools), [name for name, _, _ in plan.pools]


def _nest(options):
    """``{'a.b': v}`` -> ``{'a': {'b': v}}`` (merged by MMEngine over the bases)."""
    out = {}
    for key, value in options.items():
        node = out
        *parents, last = key.split('.')
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def _merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            _merge(a[k], v)
        else:
            a[k] = v
    return a


def bn_layers(plan):
    """:func:`scored_bn_layers` of the teacher, recorded under ``DIR`` so that a rerun
    builds no model to know it."""
    key = digest('bn_layers', load_model_config(plan.teacher.cfg_path).to_dict())
    found = finished(plan.work_dir, 'teacher_bn_layers', key)
    if found is None:
        found = dict(bn_layers=scored_bn_layers(plan.teacher.cfg_path))
        mark_finished(plan.work_dir, 'teacher_bn_layers', key, found, [])
    return found['bn_layers']


def config_dict(plan):
    """The top-level keys of the written config (besides ``_base_``)."""
    t = plan.teacher
    teacher = dict(cfg_path=t.cfg_path)
    random = dict(allow_random_teacher=True) if plan.allow_random_teacher else {}
    preprocessor = dict(copy.deepcopy(t.preprocessor) or dict(type='SegDataPreProcessor'),
                        size=tuple(t.crop))
    preprocessor.setdefault('type', 'SegDataPreProcessor')
    pool, names = pool_config(plan, train_pipeline(t.crop))
    ads = dict(teacher=teacher, teacher_checkpoint=t.checkpoint, strategy='ads',
               bn_layers=bn_layers(plan), score_pipeline=score_pipeline(t),
               cache_dir=plan.path('ads_cache'), seed=plan.seed, **random)
    if names:
        ads['source_names'] = names
    every = min(plan.iters, max(2, plan.iters // NUM_CHECKPOINTS))
    cfg = dict(
        custom_imports=dict(imports=['mmseg_dfss'], allow_failed_imports=False),
        model=dict(type='DataFreeDistiller', teacher=teacher, teacher_checkpoint=t.checkpoint,
                   student=plan.student,
                   distill_loss=dict(type='WDPDLoss', mode='wdpd', ramp=0.5, loss_weight=1.0),
                   data_preprocessor=preprocessor, **random),
        train_dataloader=dict(
            batch_size=plan.batch_size, num_workers=2, persistent_workers=True,
            sampler=dict(type='SeededInfiniteSampler', shuffle=True),
            dataset=dict(type='ADSDataset', dataset=pool, num_samples=plan.eps, **ads)),
        val_dataloader=dict(
            batch_size=1, num_workers=0, persistent_workers=False,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(
                type='TeacherLabeledDataset',
                dataset=dict(type='ADSHeldOutDataset', dataset=copy.deepcopy(pool),
                             num_skipped=plan.eps, num_samples=plan.val_images,
                             **copy.deepcopy(ads)),
                teacher=teacher, teacher_checkpoint=t.checkpoint,
                cache_dir=plan.path('teacher_labels'), pipeline=eval_pipeline(t),
                metainfo=dict(classes=tuple(t.classes)), **random)),
        val_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(
            type='SGD', lr=plan.lr, momentum=0.9, weight_decay=5e-4), clip_grad=None),
        param_scheduler=[dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0,
                              end=plan.iters, by_epoch=False)],
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=plan.iters, val_interval=every),
        val_cfg=dict(type='ValLoop'),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=min(50, every), log_metric_by_epoch=False),
            checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=every,
                            max_keep_ckpts=2, save_best='mIoU', rule='greater'),
            visualization=dict(type='SegVisualizationHook')),
        custom_hooks=[dict(type='WDPDHook'), dict(type='ADSSelectionHook'),
                      dict(type='ResumedValidationHook')],
        randomness=dict(seed=plan.seed),
        log_processor=dict(by_epoch=False),
        work_dir=plan.path('train'),
    )
    # the validation pool is the training pool without its training augmentation
    cfg['val_dataloader']['dataset']['dataset']['dataset'] = _with_pipeline(
        cfg['val_dataloader']['dataset']['dataset']['dataset'], [])
    return _merge(cfg, _nest(plan.cfg_options))


def _with_pipeline(pool, pipeline):
    pool = copy.deepcopy(pool)
    if pool.get('type') == 'ConcatDataset':
        pool['datasets'] = [dict(d, pipeline=pipeline) for d in pool['datasets']]
    else:
        pool['pipeline'] = pipeline
    return pool


def config_text(plan):
    """The text of ``DIR/dfss_config.py``."""
    t = plan.teacher
    lines = [
        f'# DFSS: the teacher {t.given} distilled into the student {plan.student_name}',
        '# on the pool images ADS keeps (no labelled image is used). Written by',
        f'#   python tools/compress.py {" ".join(plan.argv)}',
        '# Run it alone: python tools/train.py THIS_FILE. Validation mIoU is agreement',
        '# with the teacher on held-out pool images, not accuracy.',
        "_base_ = ['mmseg::_base_/default_runtime.py']",
    ]
    for key, value in config_dict(plan).items():
        lines.append(f'{key} = {pprint.pformat(value, width=92, sort_dicts=False)}')
    return '\n'.join(lines) + '\n'


def write_config(plan):
    """Writes ``DIR/dfss_config.py`` (only when its text changed); returns its path."""
    path = plan.path(CONFIG_NAME)
    text = config_text(plan)
    if os.path.isfile(path):
        with open(path, encoding='utf-8') as f:
            if f.read() == text:
                return path
    with atomic_write(path, encoding='utf-8') as f:
        f.write(text)
    return path
