"""``DIR/dfss_config.py``: the DFSS config a compress run trains with, written first.
It is the artefact a person reads and edits; ``tools/train.py DIR/dfss_config.py``
runs it alone. Every cache it names lives under ``DIR``."""
import copy
import os
import os.path as osp
import pprint

from ...core.atomic_file import atomic_write
from ...core.teacher import load_model_config
from .stage_stamp import digest, finished, mark_finished
from .teacher_spec import scored_bn_layers

CONFIG_NAME = 'dfss_config.py'
NUM_CHECKPOINTS = 5
LABEL_FREE_BASE = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__))))), 'configs', '_base_', 'dfss', 'dfss_label_free.py')  # checkpoints (and validations) over a run: the resume points


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
    """The top-level keys of the written config, over the DFSS label-free base: the
    teacher named once (``model``), the pool, eps, held-out images, schedule, caches."""
    t = plan.teacher
    random = dict(allow_random_teacher=True) if plan.allow_random_teacher else {}
    preprocessor = dict(copy.deepcopy(t.preprocessor) or dict(type='SegDataPreProcessor'),
                        size=tuple(t.crop))
    preprocessor.setdefault('type', 'SegDataPreProcessor')
    pool, names = pool_config(plan, train_pipeline(t.crop))
    ads = dict(dataset=pool, num_samples=plan.eps, bn_layers=bn_layers(plan),
               cache_dir=plan.path('ads_cache'), seed=plan.seed)
    if names:
        ads['source_names'] = names
    every = min(plan.iters, max(2, plan.iters // NUM_CHECKPOINTS))
    cfg = dict(
        model=dict(teacher=dict(cfg_path=t.cfg_path), teacher_checkpoint=t.checkpoint,
                   student=plan.student, data_preprocessor=preprocessor, **random),
        train_dataloader=dict(batch_size=plan.batch_size, dataset=ads),
        val_dataloader=dict(dataset=dict(
            dataset=dict(num_samples=plan.val_images), cache_dir=plan.path('teacher_labels'),
            metainfo=dict(classes=tuple(t.classes)))),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(
            type='SGD', lr=plan.lr, momentum=0.9, weight_decay=5e-4), clip_grad=None),
        param_scheduler=[dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0,
                              end=plan.iters, by_epoch=False)],
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=plan.iters, val_interval=every),
        default_hooks=dict(logger=dict(interval=min(50, every)),
                           checkpoint=dict(interval=every, max_keep_ckpts=2)),
        custom_hooks=[dict(type='WDPDHook'), dict(type='ADSSelectionHook'),
                      dict(type='ResumedValidationHook')],
        randomness=dict(seed=plan.seed),
        work_dir=plan.path('train'),
    )
    return _merge(cfg, _nest(plan.cfg_options))


def config_text(plan):
    """The text of ``DIR/dfss_config.py``."""
    t = plan.teacher
    lines = [
        f'# DFSS: the teacher {t.given} distilled into the student {plan.student_name}',
        '# on the pool images ADS keeps (no labelled image is used). Written by',
        f'#   python tools/compress.py {" ".join(plan.argv)}',
        '# Run it alone: python tools/train.py THIS_FILE. Validation mIoU is agreement',
        '# with the teacher on held-out pool images, not accuracy.',
        f'_base_ = [{LABEL_FREE_BASE!r}]',
    ]
    for key, value in config_dict(plan).items():
        lines.append(f'{key} = {pprint.pformat(value, width=100, compact=True, sort_dicts=False)}')
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
