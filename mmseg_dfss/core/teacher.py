"""Build the frozen teacher shared by ADS scoring and the distiller.

A model (teacher or student) is given as users write it in configs:

- an MMSeg segmentor config dict (``dict(type='EncoderDecoder', ...)``);
- a config file path (``mmseg::`` package paths included): the file's ``model``;
- MMRazor's ``dict(cfg_path='mmseg::...py' or a file, **overrides)``: the file's
  ``model`` with the overrides merged in by MMEngine's config merge (``_delete_``
  honoured), so ``--cfg-options model.student.decode_head.channels=8`` reaches inside.

A checkpoint is read by MMEngine's ``CheckpointLoader``, so every scheme it knows works
(local files, ``http(s)://``, ``open-mmlab://``, ``mmcls://``, ``torchvision://``,
``s3://`` through file backends; downloads go to the torch hub cache, rank 0 first).
Every scheme reads through :func:`.safe_load.safe_torch_load` (``weights_only`` with the
project's allow-list, no fallback; see :mod:`.safe_load`). Loading is
strict: missing, unexpected or mis-shaped keys are an error naming the checkpoint and
the keys, never a silently half-random teacher. A random-weight teacher (no checkpoint)
needs the explicit opt-in ``allow_random_teacher=True``.

``teacher_checkpoint='metafile'`` takes the weights of a teacher given as a zoo config
(``'mmseg::...py'`` or ``dict(cfg_path='mmseg::...py', ...)``) from the installed
MMSeg's metafile (:func:`resolve_teacher_checkpoint`), so a config names no host.
"""
import copy
import hashlib
import json
import os.path as osp

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from .safe_load import CheckpointRefusedError, load_from_local, register_safe_checkpoint_loaders

from .zoo import METAFILE, MetafileError, metafile_weights, resolve_package_path

MAX_KEYS_SHOWN = 10
CFG_PATH = 'cfg_path'


def resolve_config_path(path):
    """``pkg::rel/path.py`` -> the file in that package's ``.mim/configs`` folder; a
    config the installed release does not ship is a one-line :class:`ZooConfigError`."""
    if '::' not in path:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file {path!r} does not exist')
        return path
    return resolve_package_path(path)


def _model_from_file(path):
    """The ``model`` of a config file (its top-level ``data_preprocessor`` filling a
    missing one). Read each time: a base edited in place is seen; the costly part of a
    read, MMEngine's metafile parse per ``mmseg::`` base, is memoized where it happens
    (:mod:`.metafile_reads`)."""
    cfg = Config.fromfile(resolve_config_path(path))
    if 'model' not in cfg:
        raise KeyError(f'config {path!r} has no `model` entry')
    model_cfg = copy.deepcopy(cfg.model)
    if 'data_preprocessor' not in model_cfg and 'data_preprocessor' in cfg:
        model_cfg.data_preprocessor = copy.deepcopy(cfg.data_preprocessor)
    return model_cfg


def load_model_config(model):
    """Returns the segmentor ``ConfigDict`` of a model spec.

    ``model`` is a config dict, a config file path, or ``dict(cfg_path=..., **overrides)``
    (MMRazor's convention). A file may be a full MMSeg config (its ``model``; a top-level
    ``data_preprocessor`` fills in a missing one) or a model base config.
    """
    if isinstance(model, (dict, ConfigDict)):
        model = copy.deepcopy(dict(model))
        # MMEngine keeps ``_delete_=True`` in a child's dict that replaced nothing (a
        # dataset teacher whose base leaves it unset): it means "this dict alone"
        model.pop('_delete_', None)
        if CFG_PATH not in model:
            return ConfigDict(model)
        path = model.pop(CFG_PATH)
        if not isinstance(path, str):
            raise TypeError(f'{CFG_PATH} must be a config file path, got {path!r}')
        base = _model_from_file(path).to_dict()
        try:  # MMEngine's own merge: nested dicts merge, `_delete_=True` replaces
            merged = Config._merge_a_into_b(model, base, allow_list_keys=True)
        except (TypeError, KeyError) as e:
            raise type(e)(f'overrides of {CFG_PATH}={path!r} do not fit its model: {e}') from e
        return ConfigDict(merged)
    if not isinstance(model, str):
        raise TypeError('a model must be a config dict, a config file path or '
                        f'dict(cfg_path=..., **overrides), got {type(model)}')
    return _model_from_file(model)


def describe_model_spec(model):
    """A short human-readable name of a model spec, for messages."""
    if isinstance(model, str):
        return model
    if isinstance(model, (dict, ConfigDict)):
        if CFG_PATH in model:
            extra = sorted(k for k in model if k != CFG_PATH)
            return model[CFG_PATH] + (f' (overriding {", ".join(extra)})' if extra else '')
        return f'an inline config dict (type={model.get("type")!r})'
    return repr(model)


def config_digest(model_cfg):
    """sha256 of a resolved model config (sorted JSON): equal configs, equal digests."""
    data = model_cfg.to_dict() if isinstance(model_cfg, ConfigDict) else model_cfg
    blob = json.dumps(data, sort_keys=True, default=repr).encode('utf-8')
    return hashlib.sha256(blob).hexdigest()


def weights_digest(model):
    """sha256 over a model's ``state_dict`` (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f'{name}|{t.dtype}|{tuple(t.shape)}|'.encode())
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(memoryview(t.numpy()).cast('B'))  # no copy of the weights
    return h.hexdigest()


def load_checkpoint_file(path, what='checkpoint'):
    """Reads a checkpoint through MMEngine's ``CheckpointLoader`` (any scheme), on CPU,
    with the project's safe loaders. Every failure is an error naming ``path``."""
    if not isinstance(path, str) or not path:
        raise TypeError(f'{what}: a checkpoint must be a path or URL string, got {path!r}')
    register_safe_checkpoint_loaders()  # again: a plugin may have replaced a scheme since
    local = CheckpointLoader._get_checkpoint_loader(path) is load_from_local
    if local and not osp.isfile(osp.expanduser(path)):
        raise FileNotFoundError(f'{what} {path!r} does not exist')
    try:
        return CheckpointLoader.load_checkpoint(path, map_location='cpu', logger='current')
    except CheckpointRefusedError as e:
        raise CheckpointRefusedError(e.path, e.refused, e.detail, what) from None
    except KeyError as e:  # an open-mmlab:// / mmcls:// / torchvision:// name not known
        raise KeyError(f'{what} {path!r}: {e} is not a model name MMEngine knows (its hub '
                       'json files and $MMENGINE_HOME/open_mmlab.json)') from e
    except FileNotFoundError as e:
        raise FileNotFoundError(f'{what} {path!r} could not be found: {e}') from e
    except OSError as e:  # urllib's HTTPError/URLError (404, refused, DNS), I/O errors
        raise OSError(f'{what} {path!r} could not be read: {e}') from e


def checkpoint_state_dict(path, what='checkpoint'):
    """The ``state_dict`` of an MMEngine or plain checkpoint, ``module.`` prefix removed."""
    ckpt = load_checkpoint_file(path, what)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f'{what} {path!r} holds no state_dict')
    return {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}


def _names(keys):
    keys = sorted(keys)
    more = f' ... (+{len(keys) - MAX_KEYS_SHOWN} more)' if len(keys) > MAX_KEYS_SHOWN else ''
    return ', '.join(keys[:MAX_KEYS_SHOWN]) + more


def load_checkpoint_strict(model, path, what='model'):
    """Loads ``path`` into ``model``; any key or shape mismatch raises with names."""
    state = checkpoint_state_dict(path, f'{what} checkpoint')
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


def check_teacher_checkpoint(checkpoint, allow_random_teacher, owner, key='teacher_checkpoint'):
    """``checkpoint=None`` is an error unless ``allow_random_teacher`` (tests, benchmarks):
    a random-weight teacher must never be used by accident."""
    if checkpoint is None and not allow_random_teacher:
        raise ValueError(
            f'{owner}: {key} is None, so the teacher would have random weights; give the '
            f"trained teacher's checkpoint (a path or URL, or '{METAFILE}' for a zoo "
            "teacher: its installed metafile's Weights), or set allow_random_teacher=True "
            'for tests and benchmarks')
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise TypeError(f'{owner}: {key} must be a path or URL string, got {checkpoint!r}')


def teacher_config_path(model):
    """The config file a model spec names (a path, or ``cfg_path`` of a dict), else None."""
    if isinstance(model, str):
        return model
    if isinstance(model, (dict, ConfigDict)) and isinstance(model.get(CFG_PATH), str):
        return model[CFG_PATH]
    return None


def resolve_teacher_checkpoint(model, checkpoint):
    """The checkpoint to load for the teacher spec ``model``: ``checkpoint`` itself, or
    for ``'metafile'`` the ``Weights`` URL that the installed package's metafile lists
    for the teacher's zoo config (see :func:`.zoo.metafile_weights`). The ADS wrapper
    and the distiller both resolve here, so one spelling gives both the same file."""
    if checkpoint != METAFILE:
        return checkpoint
    path = teacher_config_path(model)
    if path is None or '::' not in path:
        raise MetafileError(
            f"teacher_checkpoint='{METAFILE}' takes the weights of a zoo config, but the "
            f'teacher is {describe_model_spec(model)}: give it as '
            "dict(cfg_path='mmseg::<folder>/<config>.py') or give teacher_checkpoint as a "
            'path or URL')
    url, metafile = metafile_weights(path)
    print_log(f"teacher_checkpoint='{METAFILE}': {url} (the Weights of {path} in {metafile})",
              logger='current')
    return url


def build_segmentor(model):
    """An MMSeg segmentor from a model spec (see :func:`load_model_config`)."""
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    return MODELS.build(load_model_config(model))


def build_frozen_segmentor(model, checkpoint=None, what='teacher', allow_random_teacher=False):
    """Builds an MMSeg segmentor from a model spec, loads ``checkpoint`` (any
    ``CheckpointLoader`` scheme, or ``'metafile'``) strictly and freezes it. Without a
    checkpoint the weights are random, which needs ``allow_random_teacher=True`` (tests
    and benchmarks) and is logged."""
    check_teacher_checkpoint(checkpoint, allow_random_teacher, what)
    checkpoint = resolve_teacher_checkpoint(model, checkpoint)
    if checkpoint is None:
        # random weights: a zoo config's pretrained backbone would only be a download
        cfg = load_model_config(model)
        cfg.pop('pretrained', None)
        backbone = cfg.get('backbone')
        if isinstance(backbone, dict) and (backbone.get('init_cfg') or {}).get(
                'type') == 'Pretrained':
            backbone.pop('init_cfg')
        segmentor = build_segmentor(cfg)
        segmentor.init_weights()
        print_log(f'{what}: no checkpoint given, weights are randomly initialised '
                  '(allow_random_teacher=True)', logger='current', level=30)
    else:
        segmentor = build_segmentor(model)
        load_checkpoint_strict(segmentor, checkpoint, what)
    return freeze(segmentor)


def teacher_record(model, checkpoint, segmentor):
    """What a teacher is: its spec, resolved config (and digest), checkpoint and
    weights digest. ADS records it; the distiller compares against it."""
    cfg = load_model_config(model)
    return dict(spec=describe_model_spec(model), checkpoint=checkpoint,
                config=cfg.to_dict(), config_digest=config_digest(cfg),
                weights_digest=weights_digest(segmentor))
