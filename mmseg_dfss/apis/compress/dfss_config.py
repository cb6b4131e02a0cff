"""``DIR/dfss_config.py``: the DFSS config a compress run trains with, written first.
It is the artefact a person reads and edits; ``tools/train.py DIR/dfss_config.py``
runs it alone. Every cache it names lives under ``DIR``."""
import copy
import os
import os.path as osp
import textwrap

from ...core.atomic_file import atomic_write
from ...core.teacher import load_model_config
from ...models.data_free_distiller import NORM_KEYS
from .stage_stamp import digest, finished, mark_finished
from .teacher_spec import scored_bn_layers

CONFIG_NAME = 'dfss_config.py'
NUM_CHECKPOINTS = 5  # checkpoints (and validations) over a run: the resume points
COMPRESS_BASE = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__))))), 'configs', '_base_', 'dfss', 'dfss_compress.py')
WIDTH = 100  # of the written lines, where a value allows it
# SegDataPreProcessor's defaults: the written config repeats only a teacher's other values
PREPROCESSOR_DEFAULTS = dict(pad_val=0, seg_pad_val=255)


class Name(str):
    """A variable of the written config, written by its name (not quoted)."""


def train_pipeline(crop, resize=None):
    """The pool's training view, no labels: the teacher's own training resize
    (``resize``: its ``RandomResize`` scale and ratio range) when its config has one, else
    MMSeg's usual (0.5, 2.0) around the crop; then the crop (``crop_size`` when it is a
    :class:`Name`) and a flip."""
    h, w = (crop[0], crop[1]) if not isinstance(crop, Name) else (None, None)
    if resize:
        scale, ratio = tuple(resize['scale']), tuple(resize['ratio_range'])
    else:
        scale, ratio = (Name(f'{crop}[::-1]') if h is None else (w, h)), (0.5, 2.0)
    return [dict(type='LoadImageFromFile'),
            dict(type='RandomResize', scale=scale, ratio_range=ratio, keep_ratio=True),
            dict(type='RandomCrop', crop_size=crop if h is None else (h, w)),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackSegInputs')]


def pool_config(plan, pipeline, used=None):
    """The pool dataset of the pools named in ``used`` (default: all of ``plan.pools``):
    one, or MMEngine's ConcatDataset of several; and their names (None for one)."""
    chosen = [(n, ds) for n, ds, _ in plan.pools if used is None or n in used]
    # serialize_data=False: MMEngine's serialisation runs gc.collect() per build
    pools = [dict(ds, pipeline=pipeline, serialize_data=False) for _, ds in chosen]
    if len(pools) == 1:
        return pools[0], None
    return dict(type='ConcatDataset', datasets=pools), [n for n, _ in chosen]


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


def _preprocessor(plan):
    """``model.data_preprocessor``: the crop, and what of the teacher's the distiller would
    not take by itself (it fills in the type and normalisation of the teacher's model)."""
    t = plan.teacher
    own = load_model_config(t.cfg_path).get('data_preprocessor') or {}
    dp = dict(size=Name('crop_size'))
    for key, value in (t.preprocessor or {}).items():
        if key in ('type', 'size'):
            continue
        if key in NORM_KEYS and key in own or PREPROCESSOR_DEFAULTS.get(key, object()) == value:
            continue
        dp[key] = copy.deepcopy(value)
    return dp


def _under(name):
    """A folder under ``DIR`` (``compress_dir`` of the written config)."""
    return Name(f'compress_dir + {"/" + name!r}')


def config_dict(plan, used=None):
    """The top-level keys of the written config, over ``configs/_base_/dfss/
    dfss_compress.py``: the teacher named once (``model``), the pools in ``used`` (default
    all), eps, the held-out images, the schedule and the caches under ``DIR``."""
    t = plan.teacher
    random = dict(allow_random_teacher=True) if plan.allow_random_teacher else {}
    pool, names = pool_config(plan, Name('pool_pipeline'), used)
    ads = dict(dataset=pool, num_samples=plan.eps, cache_dir=_under('ads_cache'))
    layers = bn_layers(plan)
    if layers != 'backbone':
        ads['bn_layers'] = layers
    if plan.seed:
        ads['seed'] = plan.seed
    if names:
        ads['source_names'] = names
    every = min(plan.iters, max(2, plan.iters // NUM_CHECKPOINTS))
    cfg = dict(
        compress_dir=plan.work_dir,
        crop_size=tuple(t.crop),
        model=dict(teacher=dict(cfg_path=t.cfg_path), teacher_checkpoint=t.checkpoint,
                   student=plan.student, data_preprocessor=_preprocessor(plan), **random),
        pool_pipeline=train_pipeline(Name('crop_size'), t.train_resize),
        train_dataloader=dict(batch_size=plan.batch_size, dataset=ads),
        val_dataloader=dict(dataset=dict(dataset=dict(num_samples=plan.val_images),
                                         cache_dir=_under('teacher_labels'))),
        optim_wrapper=dict(optimizer=dict(lr=plan.lr)),
        train_cfg=dict(max_iters=plan.iters, val_interval=every),
        default_hooks=dict(logger=dict(interval=min(50, every)),
                           checkpoint=dict(interval=every)),
        work_dir=_under('train'),
    )
    if plan.seed:
        cfg['randomness'] = dict(seed=plan.seed)
    return _merge(cfg, _nest(plan.cfg_options))


def _flat(value):
    """``value`` as Python source on one line, dicts as ``dict(...)`` (MMSeg's style)."""
    if isinstance(value, Name):
        return str(value)
    if isinstance(value, dict):
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            return 'dict(' + ', '.join(f'{k}={_flat(v)}' for k, v in value.items()) + ')'
        return '{' + ', '.join(f'{k!r}: {_flat(v)}' for k, v in value.items()) + '}'
    if isinstance(value, list):
        return '[' + ', '.join(_flat(v) for v in value) + ']'
    if isinstance(value, tuple):
        return '(' + ', '.join(_flat(v) for v in value) + (',)' if len(value) == 1 else ')')
    return repr(value)


def _parts(value):
    """``(opening, [(item prefix, item)], closing)`` of a dict, list or tuple."""
    if isinstance(value, dict):
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            return 'dict(', [(f'{k}=', v) for k, v in value.items()], ')'
        return '{', [(f'{k!r}: ', v) for k, v in value.items()], '}'
    if isinstance(value, list):
        return '[', [('', v) for v in value], ']'
    return '(', [('', v) for v in value], ')'


def _lines(prefix, value, indent=0, suffix=''):
    """``prefix + value + suffix`` as source lines of at most :data:`WIDTH` characters
    where the values allow it: items packed greedily, nested values broken only when
    they do not fit."""
    pad = ' ' * indent
    flat = pad + prefix + _flat(value) + suffix
    if len(flat) <= WIDTH or not isinstance(value, (dict, list, tuple)) or not value:
        return [flat]
    opening, items, closing = _parts(value)
    out, cur, inner = [pad + prefix + opening], None, ' ' * (indent + 4)
    for i, (item_prefix, item) in enumerate(items):
        tail = closing + suffix if i == len(items) - 1 else ','
        piece = item_prefix + _flat(item) + tail
        if cur is not None and len(cur) + 1 + len(piece) <= WIDTH:
            cur += ' ' + piece
            continue
        if len(inner) + len(piece) <= WIDTH:
            if cur is not None:
                out.append(cur)
            cur = inner + piece
        else:  # broken over lines; a keyword's value opens at the end of the current one
            first, *rest = _lines(item_prefix, item, indent + 4, tail)
            if item_prefix and cur is not None and len(cur) + 1 + len(first.lstrip()) <= WIDTH:
                first = cur + ' ' + first.lstrip()
            elif cur is not None:
                out.append(cur)
            *head, cur = [first] + rest
            out += head
    out.append(cur)
    return out


def config_text(plan, used=None):
    """The text of ``DIR/dfss_config.py`` (training on the pools in ``used``)."""
    t = plan.teacher
    about = (f'DFSS of the teacher {t.given} into the student {plan.student_name} on the '
             'pool images ADS keeps; run alone with tools/train.py (its validation mIoU is '
             'agreement with the teacher, not accuracy).')
    if used is None and len(plan.pools) > 1:
        about += (' Every --pool for now: the pool stage compares them (DFSS Sec. 3.2) and '
                  'rewrites this file with the pools its verdict uses.')
    lines = ['# ' + line for line in textwrap.wrap(about + ' Written by:', WIDTH - 2)]
    lines += [f'#   python tools/compress.py {" ".join(plan.argv)}',
              f'_base_ = [{COMPRESS_BASE!r}]']
    for key, value in config_dict(plan, used).items():
        lines += _lines(f'{key} = ', value)
    return '\n'.join(lines) + '\n'


def write_config(plan, used=None):
    """Writes ``DIR/dfss_config.py`` training on the pools in ``used`` (default all; only
    when its text changed); returns its path."""
    path = plan.path(CONFIG_NAME)
    text = config_text(plan, used)
    if os.path.isfile(path):
        with open(path, encoding='utf-8') as f:
            if f.read() == text:
                return path
    with atomic_write(path, encoding='utf-8') as f:
        f.write(text)
    return path
