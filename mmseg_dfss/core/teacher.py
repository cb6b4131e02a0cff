"""Build the frozen teacher shared by ADS scoring and the distiller.

A teacher is given as users write it in configs: an MMSeg segmentor config dict,
or a config file path (``mmseg::`` package paths included), plus a checkpoint.
Loading is strict: missing, unexpected or mis-shaped keys are an error naming the
checkpoint file and the keys, never a silently half-random teacher.
"""
import copy
import os.path as osp
import pickle

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.runner.checkpoint import _load_checkpoint

MAX_KEYS_SHOWN = 10


def resolve_config_path(path):
    """``pkg::rel/path.py`` -> the file in that package's ``.mim/configs`` folder."""
    if '::' not in path:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file {path!r} does not exist')
        return path
    from mmengine.utils import get_installed_path
    package, rel = path.split('::', 1)
    try:
        root = get_installed_path(package)
    except Exception as e:  # not installed / not a package
        raise FileNotFoundError(f'config {path!r}: package {package!r} is not installed') from e
    full = osp.join(root, '.mim', 'configs', rel)
    if not osp.isfile(full):
        raise FileNotFoundError(f'config {path!r}: no file {full!r}')
    return full


def load_model_config(model):
    """Returns the segmentor ``ConfigDict`` from a dict or a config file path.

    A file may be a full MMSeg config (its ``model``; a top-level
    ``data_preprocessor`` fills in a missing one) or a model base config.
    """
    if isinstance(model, (dict, ConfigDict)):
        return ConfigDict(copy.deepcopy(dict(model)))
    if not isinstance(model, str):
        raise TypeError(f'a model must be a config dict or a config file path, got {type(model)}')
    cfg = Config.fromfile(resolve_config_path(model))
    if 'model' not in cfg:
        raise KeyError(f'config {model!r} has no `model` entry')
    model_cfg = copy.deepcopy(cfg.model)
    if 'data_preprocessor' not in model_cfg and 'data_preprocessor' in cfg:
        model_cfg.data_preprocessor = copy.deepcopy(cfg.data_preprocessor)
    return model_cfg


def checkpoint_state_dict(path):
    """The ``state_dict`` of an MMEngine or plain checkpoint, ``module.`` prefix removed."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    try:
        ckpt = _load_checkpoint(path, map_location='cpu')
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(
            f'checkpoint {path!r} holds objects that are not allowed to be unpickled '
            f'(torch.load weights_only): {e}') from e
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f'checkpoint {path!r} holds no state_dict')
    return {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}


def _names(keys):
    keys = sorted(keys)
    more = f' ... (+{len(keys) - MAX_KEYS_SHOWN} more)' if len(keys) > MAX_KEYS_SHOWN else ''
    return ', '.join(keys[:MAX_KEYS_SHOWN]) + more


def load_checkpoint_strict(model, path, what='model'):
    """Loads ``path`` into ``model``; any key or shape mismatch raises with names."""
    state = checkpoint_state_dict(path)
    own = model.state_dict()
    missing = set(own) - set(state)
    unexpected = set(state) - set(own)
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
              for k in set(own) & set(state)
              if hasattr(state[k], 'shape') and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        hint = ''
        if any(k.startswith(('teacher.', 'student.')) for k in unexpected):
            hint = (' (this looks like a distiller checkpoint: export the student with '
                    'tools/export_student.py first)')
        parts = []
        if missing:
            parts.append(f'missing keys [{_names(missing)}]')
        if unexpected:
            parts.append(f'unexpected keys [{_names(unexpected)}]')
        if shapes:
            parts.append(f'shape mismatches [{_names(shapes)}]')
        raise KeyError(f'{what} checkpoint {path!r} does not match the {what} config: '
                       + '; '.join(parts) + hint)
    model.load_state_dict(state, strict=True)


def freeze(model):
    """Eval mode, no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build_frozen_segmentor(model, checkpoint=None, what='teacher'):
    """Builds an MMSeg segmentor from a config dict/path, loads ``checkpoint``
    strictly and freezes it. Without a checkpoint the weights are random (for
    tests and benchmarks) and a warning says so."""
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = load_model_config(model)
    segmentor = MODELS.build(cfg)
    if checkpoint is None:
        segmentor.init_weights()
        print_log(f'{what}: no checkpoint given, weights are randomly initialised',
                  logger='current', level=30)
    else:
        load_checkpoint_strict(segmentor, checkpoint, what)
    return freeze(segmentor)
