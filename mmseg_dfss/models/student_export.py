"""Export a distilled student as a plain MMSeg checkpoint + config.

The result loads with MMSeg's own ``tools/test.py`` and ``mmseg.apis.init_model``
without this plugin: the config holds no ``custom_imports`` and no type registered
by ``mmseg_dfss``, and the checkpoint holds only tensors and plain Python data
(so ``torch.load(weights_only=True)`` reads it), with ``meta.dataset_meta``.
Shared by :class:`StudentExportHook` and ``tools/export_student.py``.
"""
import copy
import inspect
import os
import os.path as osp
from collections import OrderedDict

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.registry import Registry

from ..core.atomic_file import atomic_write
from ..core.literal_config import parse_literal_config
from ..core.teacher import load_checkpoint_file, load_model_config
from ..core.zoo import check_config_bases
from .data_free_distiller import NORM_KEYS, distiller_data_preprocessor, drop_auxiliary_head

CONFIG_NAME = 'student_config.py'
CHECKPOINT_NAME = 'student.pth'
# The exported student's logits equal the distiller's within this (absolute): the
# weights are bitwise the same, only the order of float32 sums differs (another
# process, thread count or CPU kernel). Its argmax is the same wherever the top-2
# logits are more than twice this apart.
EXPORT_ATOL = 1e-4
# top-level keys of a test-only MMSeg config worth keeping
KEEP_KEYS = ('default_scope', 'env_cfg', 'log_processor', 'log_level', 'vis_backends',
             'visualizer', 'default_hooks', 'tta_model', 'tta_pipeline', 'test_pipeline',
             'crop_size', 'norm_cfg', 'launcher')
LOADERS = (('val_dataloader', 'val_evaluator', 'val_cfg'),
           ('test_dataloader', 'test_evaluator', 'test_cfg'))


def plugin_type_names():
    """Every name that ``mmseg_dfss`` registered in an mmseg registry."""
    import mmseg.registry as registries
    names = set()
    for reg in vars(registries).values():
        if isinstance(reg, Registry):
            for name, obj in reg.module_dict.items():
                if getattr(obj, '__module__', '').startswith('mmseg_dfss'):
                    names.add(name)
    return names


def _types(obj, path=''):
    """(path, type) of every ``type`` string in a nested config."""
    if isinstance(obj, dict):
        found = [(path or '<root>', obj['type'])] if isinstance(obj.get('type'), str) else []
        for k, v in obj.items():
            found += _types(v, f'{path}.{k}' if path else str(k))
        return found
    if isinstance(obj, (list, tuple)):
        return [t for i, v in enumerate(obj) for t in _types(v, f'{path}[{i}]')]
    return []


def _plain(obj):
    """Tensors/numpy values/tuples -> plain Python (safe for weights_only loading)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, 'tolist'):
        return obj.tolist()
    return obj


def _init_default(cls, name):
    for klass in cls.__mro__:
        if '__init__' in vars(klass):
            param = inspect.signature(klass.__init__).parameters.get(name)
            if param is not None and param.default is not inspect.Parameter.empty:
                return param.default
    return None


def plain_dataset_cfg(dataset, plugin_names):
    """A plain ``BaseSegDataset`` config equivalent to ``dataset``, or None.

    A plugin dataset converts when it only sets defaults (``__init__``) and
    ``METAINFO`` on top of ``BaseSegDataset``: its file listing is MMSeg's own. A
    dataset class with its own listing may define a classmethod
    ``plain_mmseg_dataset_cfg(cfg)`` returning the equivalent plain config, or None.
    """
    from mmseg.datasets import BaseSegDataset
    from mmseg.registry import DATASETS
    dataset = ConfigDict(copy.deepcopy(dict(dataset)))
    if any(t in plugin_names for _, t in _types(dataset.get('pipeline', []))):
        return None
    if dataset.get('type') not in plugin_names:
        return dataset
    cls = DATASETS.get(dataset.type)
    if cls is None:
        return None
    if hasattr(cls, 'plain_mmseg_dataset_cfg'):  # a dataset may say what plain MMSeg reads
        plain = cls.plain_mmseg_dataset_cfg(dataset)
        return None if plain is None else ConfigDict(plain)
    if not issubclass(cls, BaseSegDataset):
        return None
    allowed = {'__init__', '__module__', '__doc__', '__qualname__', '__parameters__', 'METAINFO',
               '__abstractmethods__', '_abc_impl', '__dict__', '__weakref__',
               '__firstlineno__', '__static_attributes__'}
    for klass in cls.__mro__[:cls.__mro__.index(BaseSegDataset)]:
        if set(vars(klass)) - allowed:
            return None
    metainfo = dict(_plain(dict(cls.METAINFO)))
    metainfo.update(_plain(dict(dataset.get('metainfo', {}))))
    dataset.type = 'BaseSegDataset'
    dataset.metainfo = metainfo
    for key in ('img_suffix', 'seg_map_suffix', 'reduce_zero_label', 'ignore_index'):
        if key not in dataset:
            default = _init_default(cls, key)
            if default is not None:
                dataset[key] = default
    return dataset


def dataset_meta_from_cfg(cfg):
    """classes/palette of the test (or val) dataset a config evaluates on."""
    from mmseg.registry import DATASETS
    for key in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(key) or {}).get('dataset')
        if not dataset:
            continue
        cls = DATASETS.get(dataset.get('type', ''))
        meta = dict(getattr(cls, 'METAINFO', {}) or {})
        meta.update(dict(dataset.get('metainfo', {}) or {}))
        if 'classes' in meta:
            return _plain(meta)
    return None


def student_config(cfg):
    """The plain, test-only MMSeg config of the student of a distiller ``cfg``."""
    if cfg.model.get('type') != 'DataFreeDistiller':
        raise ValueError(f"config model.type is {cfg.model.get('type')!r}, expected "
                         "'DataFreeDistiller'")
    plugin_names = plugin_type_names()
    model = drop_auxiliary_head(load_model_config(cfg.model.student), notice=False)
    # the normalisation the student was trained with: the distiller's, else the teacher's
    preprocessor = cfg.model.get('data_preprocessor')
    if preprocessor is None or not set(('type', ) + NORM_KEYS) <= set(preprocessor):
        preprocessor = distiller_data_preprocessor(
            preprocessor, load_model_config(cfg.model.teacher).get('data_preprocessor'))
    if preprocessor is not None:
        model.data_preprocessor = copy.deepcopy(preprocessor)
    model.pretrained = None  # the weights come from the exported checkpoint
    out = {k: copy.deepcopy(cfg[k]) for k in KEEP_KEYS if k in cfg}
    out['model'] = model
    out['data_preprocessor'] = copy.deepcopy(model.get('data_preprocessor'))
    for loader_key, evaluator_key, loop_key in LOADERS:
        loader = cfg.get(loader_key)
        if not loader:
            continue
        dataset = plain_dataset_cfg(loader.dataset, plugin_names)
        if dataset is None:
            print_log(f'student export: {loader_key} uses a dataset or transform of this '
                      f'plugin ({loader.dataset.get("type")}) that plain MMSeg cannot '
                      f'build; the exported config leaves {loader_key} out (give your own '
                      'to run tools/test.py)', logger='current', level=30)
            continue
        out[loader_key] = copy.deepcopy(loader)
        out[loader_key]['dataset'] = dataset
        for key in (evaluator_key, loop_key):
            if key in cfg:
                out[key] = copy.deepcopy(cfg[key])
    if 'test_pipeline' not in out and 'test_dataloader' in out:
        out['test_pipeline'] = copy.deepcopy(out['test_dataloader'].dataset.pipeline)
    if 'default_hooks' in out:
        out['default_hooks'] = {k: v for k, v in out['default_hooks'].items()
                                if not (isinstance(v, dict) and v.get('type') in plugin_names)}
    bad = [(p, t) for p, t in _types(out) if t in plugin_names]
    if bad:
        raise ValueError('student export: the student config still uses plugin types: '
                         + ', '.join(f'{p}={t}' for p, t in bad))
    return Config(out)


def export_student(cfg, student_state_dict, out_dir, dataset_meta=None, source=None):
    """Writes ``out_dir/student.pth`` and ``out_dir/student_config.py``.

    Args:
        cfg (Config): the distillation config (model.type='DataFreeDistiller').
        student_state_dict (dict): the student's weights.
        out_dir (str): output folder (created).
        dataset_meta (dict, optional): classes/palette; by default from the
            config's test/val dataset.
        source (str, optional): where the weights came from, kept in meta.

    Returns:
        (checkpoint path, config path).
    """
    plain_cfg = student_config(cfg)
    meta = dataset_meta_from_cfg(cfg)
    if meta is None and dataset_meta and 'classes' in dataset_meta:
        meta = _plain(dict(dataset_meta))
    if meta is None:
        print_log('student export: no class names found in the config\'s test/val dataset; '
                  'the checkpoint has no dataset_meta', logger='current', level=30)
    os.makedirs(out_dir, exist_ok=True)
    cfg_path = osp.join(out_dir, CONFIG_NAME)
    ckpt_path = osp.join(out_dir, CHECKPOINT_NAME)
    with atomic_write(cfg_path, encoding='utf-8') as f:  # what Config.dump writes
        f.write(plain_cfg.pretty_text)
    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in student_state_dict.items())
    checkpoint = dict(meta=dict(mmseg_dfss_export=dict(source=str(source))), state_dict=state)
    if meta is not None:
        checkpoint['meta']['dataset_meta'] = meta
    with atomic_write(ckpt_path, 'wb') as f:
        torch.save(checkpoint, f)
    print_log(f'student exported: {ckpt_path} and {cfg_path}', logger='current')
    return ckpt_path, cfg_path


def export_student_from_checkpoint(checkpoint, out_dir, config=None):
    """Exports the student of a ``DataFreeDistiller`` training checkpoint (a path or
    any URL MMEngine's ``CheckpointLoader`` reads; it holds no teacher weights).

    ``config`` (path) defaults to the config MMEngine stored in the checkpoint, read as
    literals (:func:`~mmseg_dfss.core.literal_config.parse_literal_config`), never run.
    """
    ckpt = load_checkpoint_file(checkpoint, 'checkpoint')  # a path or any URL
    state = ckpt.get('state_dict', ckpt)
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    student = OrderedDict((k[len('student.'):], v) for k, v in state.items()
                          if k.startswith('student.'))
    if not student:
        raise KeyError(f'checkpoint {checkpoint!r} has no student.* weights: not a '
                       'DataFreeDistiller checkpoint')
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    if config is not None:
        check_config_bases(config)  # an mmseg:: base the installed MMSeg lacks: one line
        cfg = Config.fromfile(config)
    elif isinstance(meta.get('cfg'), str):
        cfg = Config(parse_literal_config(meta['cfg'], f'checkpoint {checkpoint!r}: meta.cfg'))
    else:
        raise ValueError(f'checkpoint {checkpoint!r} stores no config (or its text was '
                         'refused, see the warning above); pass the training config '
                         'explicitly (--config)')
    return export_student(cfg, student, out_dir, dataset_meta=meta.get('dataset_meta'),
                          source=checkpoint)
