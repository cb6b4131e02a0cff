"""One teacher per DFSS config: the datasets that run it take it from the distiller.

A DFSS config names its teacher once, in ``model`` (``teacher``, ``teacher_checkpoint``,
``allow_random_teacher``). :func:`resolve_shared` copies them into every
``ADSDataset``, ``ADSHeldOutDataset`` and ``TeacherLabeledDataset`` of the config's
dataloaders that leaves them unset, and fills an ``ADSHeldOutDataset``'s unset pool,
scoring settings and ``num_skipped`` (the training eps) from the training
``ADSDataset``, so its ranks continue that selection through the same score cache.
It runs after ``--cfg-options`` are merged (in ``DFSSRunner.from_cfg`` and in every
tool that builds these datasets), so ``--cfg-options model.teacher.<key>=...`` and
``model.teacher_checkpoint=...`` reach each of them. A dataset that names its own
teacher keeps it; the distiller stops a run whose ADS teacher is not its own. A
dataset teacher that names no model (only overrides, e.g. from ``--cfg-options
train_dataloader.dataset.teacher.<key>=...``) is merged over the model's.
"""
import copy

from mmengine.config import Config

TEACHER_KEYS = ('teacher', 'teacher_checkpoint', 'allow_random_teacher')
TEACHER_DATASETS = ('ADSDataset', 'ADSHeldOutDataset', 'TeacherLabeledDataset')
# what an ADSHeldOutDataset shares with the training ADSDataset (same scores, same cache)
HELD_OUT_KEYS = ('dataset', 'teacher', 'teacher_checkpoint', 'allow_random_teacher',
                 'strategy', 'bn_layers', 'score_pipeline', 'score_batch_size',
                 'score_num_workers', 'cache_dir', 'seed', 'max_unreadable', 'score_io_retries',
                 'source_names')
# keys whose None (or empty dict: the DFSS base's placeholder) means "not set"; for the
# others only a missing key does
NONE_IS_UNSET = ('teacher', 'dataset', 'score_pipeline', 'num_skipped')
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _type(node):
    t = node.get('type') if isinstance(node, dict) else None
    return t.split('.')[-1] if isinstance(t, str) else None


def _walk(node):
    """Every dict in a dataloader config, depth first (wrappers before their datasets)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _walk(value)


def _unset(node, key):
    if key not in node:
        return True
    value = node[key]
    return key in NONE_IS_UNSET and (value is None or (isinstance(value, dict) and not value))


def _fill(node, source, keys):
    """Copies ``keys`` of ``source`` that ``node`` leaves unset; returns those copied."""
    done = []
    for key in keys:
        if _unset(node, key) and key in source and not _unset(source, key):
            node[key] = copy.deepcopy(source[key])
            done.append(key)
    return done


def training_ads(cfg):
    """The training ``ADSDataset`` config of ``cfg`` (the first in train_dataloader)."""
    for node in _walk((cfg.get('train_dataloader') or {}).get('dataset')):
        if _type(node) == 'ADSDataset':
            return node
    return None


def model_teacher(cfg):
    """``{teacher, teacher_checkpoint[, allow_random_teacher]}`` of a DataFreeDistiller
    ``model`` (its unset keys left out), or ``{}``."""
    model = cfg.get('model')
    if _type(model) != 'DataFreeDistiller':
        return {}
    return {k: model[k] for k in TEACHER_KEYS if k in model}


def _partial(spec):
    """A teacher dict that names no model (no ``type``, no ``cfg_path``): overrides of
    another teacher, as ``--cfg-options train_dataloader.dataset.teacher.<key>=...``
    leaves on a dataset whose teacher was unset."""
    return isinstance(spec, dict) and bool(spec) and not ({'type', 'cfg_path'} & set(spec))


def _teacher_from(node, teacher):
    """Fills ``node``'s unset teacher from ``teacher``: the spec, and the checkpoint
    and opt-in only when the spec itself came from there. A partial teacher (overrides
    only) is merged over ``teacher``'s."""
    if _partial(node.get('teacher')) and not _unset(teacher, 'teacher'):
        base = teacher['teacher']
        base = dict(cfg_path=base) if isinstance(base, str) else copy.deepcopy(dict(base))
        node['teacher'] = Config._merge_a_into_b(copy.deepcopy(dict(node['teacher'])), base)
        if _unset(node, 'teacher_checkpoint'):
            node['teacher_checkpoint'] = copy.deepcopy(teacher.get('teacher_checkpoint'))
    if _unset(node, 'teacher'):
        if _unset(teacher, 'teacher'):
            return
        node['teacher'] = copy.deepcopy(teacher['teacher'])
        if _unset(node, 'teacher_checkpoint'):
            node['teacher_checkpoint'] = copy.deepcopy(teacher.get('teacher_checkpoint'))
    if 'allow_random_teacher' not in node and 'allow_random_teacher' in teacher:
        node['allow_random_teacher'] = teacher['allow_random_teacher']


def resolve_shared(cfg):
    """Fills, in place, the teacher of every teacher-running dataset of ``cfg``'s
    dataloaders from ``model`` and an ``ADSHeldOutDataset``'s ADS settings from the
    training ``ADSDataset``; returns ``cfg``. Idempotent; a config without a
    DataFreeDistiller or such datasets is left as it is."""
    teacher = model_teacher(cfg)
    train = training_ads(cfg)
    if train is not None:
        _teacher_from(train, teacher)
    for key in DATALOADERS:
        loader = cfg.get(key)
        if not isinstance(loader, dict):
            continue
        for node in _walk(loader.get('dataset')):
            kind = _type(node)
            if kind not in TEACHER_DATASETS or node is train:
                continue
            if kind == 'ADSHeldOutDataset' and train is not None:
                _fill(node, train, [k for k in HELD_OUT_KEYS if k not in TEACHER_KEYS])
                if _unset(node, 'num_skipped') and 'num_samples' in train:
                    node['num_skipped'] = train['num_samples']
                _teacher_from(node, {k: train[k] for k in TEACHER_KEYS if k in train})
            _teacher_from(node, teacher)
    return cfg


__all__ = ['resolve_shared', 'training_ads', 'model_teacher', 'TEACHER_DATASETS',
           'HELD_OUT_KEYS']
