"""Every checkpoint is read with ``torch.load(weights_only=True)`` and this allow-list.

Checkpoints are untrusted: unpickling one in full can run any code it carries. MMEngine
does not guarantee restriction on every line: onedl-mmengine's loaders retry a refused
file with ``weights_only=False`` and widen the allow-list with ``builtins.getattr``
itself; MMEngine's http loader calls ``torch.hub.load_state_dict_from_url``, whose
default is ``weights_only=False``. So :func:`safe_torch_load` is the one place that
unpickles a checkpoint, and :func:`register_safe_checkpoint_loaders` (run on
``import mmseg_dfss``) makes MMEngine's ``CheckpointLoader`` use it for every scheme
MMEngine ships: teacher, ``load_from``, ``--resume``, ``tools/test.py CONFIG CKPT``,
``init_cfg=dict(type='Pretrained')`` all read through it. A refused checkpoint raises
:class:`CheckpointRefusedError` naming the file and the global; there is no fallback.

The allow-list is what MMEngine's own checkpoints hold besides tensors (a
``MessageHub`` state with ``HistoryBuffer`` objects, numpy scalars and arrays of plain
numeric dtypes), plus ``getattr`` restricted to ``HistoryBuffer``'s statistics methods
(``torch.save``'s pickle protocol 2 writes ``HistoryBuffer.min`` as
``getattr(HistoryBuffer, 'min')``), each through a checked stand-in
(:mod:`mmseg_dfss.core.safe_globals`). The config text a loaded checkpoint carries is
re-written from its literals or removed (:func:`defuse_config_text`), so MMEngine code
that runs it (a resume, an inferencer with ``model=None``) runs only literals.
"""
import contextlib
import hashlib
import io
import os
import os.path as osp
import pickle
import re
import shutil
import tempfile
import zipfile
from urllib.parse import urlparse

import torch

from .literal_config import LiteralConfigError, literal_config_text, parse_literal_config
from .safe_globals import checkpoint_safe_globals

_registered = False


class CheckpointRefusedError(pickle.UnpicklingError):
    """A checkpoint holds a pickled global outside the allow-list; it was not loaded."""

    def __init__(self, path, refused, detail='', what='checkpoint'):
        self.path, self.refused, self.detail, self.what = path, refused, detail, what
        super().__init__(
            f'{what} {path!r} refused: it pickles {refused}, which is not on the allow-list '
            'of mmseg_dfss.core.safe_load (checkpoints are read with torch.load('
            'weights_only=True), never unpickled in full). Load only files you trust; '
            'a plain state_dict of tensors always loads.' + (f' [torch: {detail}]'
                                                             if detail else ''))

    def __reduce__(self):  # keeps the fields across processes
        return type(self), (self.path, self.refused, self.detail, self.what)


def mmengine_safe_globals():
    """The allow-list: MMEngine's log history and plain numeric numpy values, each
    through a checked stand-in (:mod:`mmseg_dfss.core.safe_globals`)."""
    return checkpoint_safe_globals()


@contextlib.contextmanager
def _only_the_allow_list():
    """During the load, torch's user allow-list is exactly :func:`mmengine_safe_globals`
    (whatever else the process registered, e.g. MMEngine's plain ``getattr``); the
    previous list is restored afterwards. Set per load, not relied on process-wide:
    leaving a ``torch.serialization.safe_globals`` context (onedl-mmengine's loader)
    removes its entries from the process-wide list, ours included."""
    ser = torch.serialization
    if not hasattr(ser, 'get_safe_globals'):  # torch < 2.4: weights_only, no allow-list
        yield
        return
    before = ser.get_safe_globals()
    ser.clear_safe_globals()
    ser.add_safe_globals(mmengine_safe_globals())
    try:
        yield
    finally:
        ser.clear_safe_globals()
        ser.add_safe_globals(before)


def refused_global(message):
    """The global a weights_only ``UnpicklingError`` message names (or its reason)."""
    found = re.search(r'refusing (getattr\([^)]*\))', message)
    if found:
        return f'builtins.{found.group(1)}'
    found = re.search(r'refusing (.+?)(?: while loading a checkpoint|$)', message, re.M)
    if found:
        return found.group(1)
    found = re.search(r'GLOBAL ([\w.]+)', message)
    if found:
        return found.group(1)
    found = re.search(r'WeightsUnpickler error: ([^\n]*)', message)
    return found.group(1).strip() if found else message.strip().splitlines()[0]


def _reason(message):
    """The line of torch's message that says why (not its advice to unpickle in full)."""
    for mark in ('refusing ', 'GLOBAL ', 'WeightsUnpickler error: '):
        for line in message.splitlines():
            reason = line.split('WeightsUnpickler error: ')[-1].split(' Please use')[0].strip()
            if mark in line and reason:
                return reason
    return ''


def safe_torch_load(file, map_location=None, name=None):
    """``torch.load(file, weights_only=True)`` with exactly the project's allow-list.

    ``name`` (default: ``file``) is what errors call the checkpoint (a URL for a
    downloaded file). A refused global raises :class:`CheckpointRefusedError`.
    """
    name = name if name is not None else (file if isinstance(file, str) else repr(file))
    with _only_the_allow_list():
        try:
            checkpoint = torch.load(file, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointRefusedError(name, refused_global(str(e)), _reason(str(e))) from None
    defuse_config_text(checkpoint, name)
    return checkpoint


# ---- config text a checkpoint carries: literals only, never code -----------------------

# where MMEngine/MMSeg run a checkpoint's text with Config.fromstring: Runner.resume
# (meta.config, for gpu_ids), BaseInferencer with model=None (message_hub.runtime_info.cfg,
# else meta.cfg); the project's student export reads meta.cfg
CONFIG_TEXT_KEYS = (('meta', 'cfg'), ('meta', 'config'), ('message_hub', 'runtime_info', 'cfg'))


def defuse_config_text(checkpoint, name):
    """Replaces each config text of ``checkpoint`` (:data:`CONFIG_TEXT_KEYS`) by text
    re-written from its parsed literals, which ``Config.fromstring`` may run: it runs
    nothing but literals. Text that is not literal assignments is removed, with a warning
    naming the checkpoint and the refused construct; MMEngine then goes on without it
    (a resume skips its gpu_ids check; an inferencer needs a config given)."""
    from mmengine.logging import print_log
    if not isinstance(checkpoint, dict):
        return
    for keys in CONFIG_TEXT_KEYS:
        parent = checkpoint
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or keys[-1] not in parent:
            continue
        where = f'{name}: {".".join(keys)}'
        try:
            text, dropped = literal_config_text(
                parse_literal_config(parent[keys[-1]], where), where)
        except LiteralConfigError as e:
            del parent[keys[-1]]
            print_log(f'{e}. It was removed from the loaded checkpoint; give the config '
                      'explicitly where one is needed.', logger='current', level=30)
            continue
        parent[keys[-1]] = text
        if dropped:
            print_log(f'{where}: custom_imports {dropped} left out (a checkpoint never '
                      'imports modules; import them yourself if the config needs them)',
                      logger='current', level=30)


# ---- MMEngine's CheckpointLoader schemes, all through safe_torch_load -------------------


def load_from_local(filename, map_location=None):
    """A local file (``~`` expanded)."""
    path = osp.expanduser(filename)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(path, map_location, name=filename)


def download_cache_path(url, model_dir=None):
    """Where ``url`` is cached: ``<hub>/checkpoints/<sha256 of the whole URL>-<file name>``,
    so two URLs with the same file name never share a file."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    digest = hashlib.sha256(url.encode('utf-8')).hexdigest()
    name = re.sub(r'[^\w.-]', '_', osp.basename(urlparse(url).path))[-100:] or 'checkpoint'
    return osp.join(model_dir, f'{digest}-{name}')


def _unzip_one(url, cached):
    """torch.hub's legacy format (one user-zipped file): the file, unpacked in a
    temporary folder and moved next to ``cached`` under a name keyed by the URL (never
    the name the zip chose). Any other zip (a torch checkpoint is one) is ``cached``."""
    with zipfile.ZipFile(cached) as z:
        members = z.infolist()
        if len(members) != 1 or members[0].is_dir():
            return cached
        entry = members[0].filename
        if osp.isabs(entry) or '..' in entry.replace('\\', '/').split('/') or '\0' in entry:
            raise ValueError(f'downloaded checkpoint {url!r}: its zip holds an entry named '
                             f'{entry!r} (absolute or with ..); not unpacked')
        unpacked = cached + '.unzipped'
        if osp.isfile(unpacked):
            return unpacked
        folder = tempfile.mkdtemp(dir=osp.dirname(cached), prefix='.unzip-')
        try:
            tmp = osp.join(folder, 'checkpoint')
            with z.open(members[0]) as src, open(tmp, 'xb') as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, unpacked)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return unpacked


def _download(url, model_dir=None, progress=False):
    """``url`` into the torch hub cache (:func:`download_cache_path`), once."""
    cached = download_cache_path(url, model_dir)
    os.makedirs(osp.dirname(cached), exist_ok=True)
    if not osp.exists(cached):
        from mmengine.logging import print_log
        print_log(f'Downloading {url} to {cached}', logger='current')
        torch.hub.download_url_to_file(url, cached, None, progress=progress)
    return _unzip_one(url, cached) if zipfile.is_zipfile(cached) else cached


def load_from_http(filename, map_location=None, model_dir=None, progress=False):
    """An http(s) URL, downloaded into the torch hub cache; in a distributed run rank 0
    downloads first, the other ranks read its file after a barrier."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    if rank == 0:
        path = _download(filename, model_dir, progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            path = _download(filename, model_dir, progress)
    return safe_torch_load(path, map_location, name=filename)


def load_from_ceph(filename, map_location=None, backend='petrel'):
    """``s3://`` / ``petrel://`` through MMEngine's file backend."""
    from mmengine.fileio import get_file_backend
    data = get_file_backend(filename, backend_args={'backend': backend}).get(filename)
    with io.BytesIO(data) as buffer:
        return safe_torch_load(buffer, map_location, name=filename)


def _mmengine_home():
    """``$MMENGINE_HOME``, else ``$XDG_CACHE_HOME/mmengine`` (``~/.cache/mmengine``)."""
    return osp.expanduser(os.getenv('MMENGINE_HOME', osp.join(
        os.getenv('XDG_CACHE_HOME', '~/.cache'), 'mmengine')))


def load_from_torchvision(filename, map_location=None):
    """``torchvision://NAME`` (``modelzoo://NAME``): torchvision's URL for NAME."""
    from mmengine.runner.checkpoint import get_torchvision_models
    name = filename.split('://', 1)[1]
    return load_from_http(get_torchvision_models()[name], map_location)


def load_from_openmmlab(filename, map_location=None):
    """``open-mmlab://NAME``: a URL, or a file under MMEngine's home, from MMEngine's
    ``open_mmlab.json`` files (deprecated names mapped to their successors)."""
    from mmengine.runner.checkpoint import get_deprecated_model_names, get_external_models
    name = filename.split('://', 1)[1]
    name = get_deprecated_model_names().get(name, name)
    url = get_external_models()[name]
    if url.startswith(('http://', 'https://')):
        return load_from_http(url, map_location)
    return load_from_local(osp.join(_mmengine_home(), url), map_location)


def load_from_mmcls(filename, map_location=None):
    """``mmcls://NAME``: an MMClassification model's backbone weights."""
    from mmengine.runner.checkpoint import get_mmcls_models
    ckpt = load_from_http(get_mmcls_models()[filename[len('mmcls://'):]], map_location)
    state = ckpt.get('state_dict', ckpt)
    return dict(state_dict={k[len('backbone.'):]: v for k, v in state.items()
                            if k.startswith('backbone.')})


def load_from_pavi(filename, map_location=None):
    """``pavi://PATH``: downloaded by pavi's modelcloud into a temporary folder."""
    import tempfile

    from pavi import modelcloud
    model = modelcloud.get(filename[len('pavi://'):])
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, model.name)
        model.download(path)
        return safe_torch_load(path, map_location, name=filename)


SCHEMES = (
    ('', load_from_local),
    (('http://', 'https://'), load_from_http),
    ([r'(\S+\:)?s3://', r'(\S+\:)?petrel://'], load_from_ceph),
    (('modelzoo://', 'torchvision://'), load_from_torchvision),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab),
    ('mmcls://', load_from_mmcls),
    ('pavi://', load_from_pavi),
)


def _mmengine_safe_torch_load(file, map_location=None, weights_only=None):
    """Stands in for onedl-mmengine's ``_safe_torch_load``, which retries a refused file
    with full unpickling: restricted always, whatever ``weights_only`` asks."""
    return safe_torch_load(file, map_location)


def register_safe_checkpoint_loaders():
    """Replaces (``force=True``) every scheme MMEngine ships in its ``CheckpointLoader``
    by one of the loaders above, all reading through :func:`safe_torch_load`; and the
    module-level ``load_from_*``/``_safe_torch_load`` functions of
    ``mmengine.runner.checkpoint`` that code may call directly."""
    from mmengine.runner import checkpoint as mmengine_checkpoint
    for prefixes, loader in SCHEMES:
        mmengine_checkpoint.CheckpointLoader.register_scheme(prefixes, loader, force=True)
        if hasattr(mmengine_checkpoint, loader.__name__):
            setattr(mmengine_checkpoint, loader.__name__, loader)
    if hasattr(mmengine_checkpoint, '_safe_torch_load'):
        mmengine_checkpoint._safe_torch_load = _mmengine_safe_torch_load


def is_safe_loader(path):
    """Whether MMEngine's ``CheckpointLoader`` reads ``path`` through this module."""
    from mmengine.runner.checkpoint import CheckpointLoader
    return any(CheckpointLoader._get_checkpoint_loader(path) is loader
               for _, loader in SCHEMES)


def register_checkpoint_safe_globals() -> bool:
    """Also allow-lists :func:`mmengine_safe_globals` process-wide, so a plain
    ``torch.load(path)`` (weights_only by default on torch >= 2.6) reads MMEngine
    checkpoints; and registers the safe ``CheckpointLoader`` schemes.

    Returns False on torch versions without ``add_safe_globals`` (< 2.4).
    """
    global _registered
    register_safe_checkpoint_loaders()
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:
        return False
    if not _registered:
        add(mmengine_safe_globals())
        _registered = True
    return True
