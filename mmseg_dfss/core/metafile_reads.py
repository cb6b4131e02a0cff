"""Each package metafile parsed once per process, where MMEngine parsed it for every
``pkg::`` config base.

MMEngine resolves a base such as ``mmseg::_base_/models/deeplabv3_r50-d8.py`` by
parsing the package's ``.mim/model-index.yml`` and every metafile it lists (52 YAML
files for MMSeg, about 0.2 s), only to find that a ``_base_`` file is in none of them.
It does so for each such base of each config it reads; the plugin reads its teacher's
config (two ``mmseg::`` bases) each time it builds the teacher, the ADS scorer and the
cache key, so one tool run spent seconds there.

:func:`memoize_metafile_reads` makes the reader MMEngine's config lookup uses
(``mmengine.config.utils.load``) keep what it parsed from a YAML file under a ``.mim``
folder, keyed by the file's path, size and modification time: a changed file is read
again. Each call gets its own copy, as a fresh parse would give it.
"""
import copy
import datetime
import os
import os.path as osp

_MARK = '_mmseg_dfss_memoized'
_IMMUTABLE = (str, int, float, bool, type(None), bytes, datetime.date)


def _stamp(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _is_metafile(path):
    return (isinstance(path, str) and path.endswith(('.yml', '.yaml'))
            and '.mim' in osp.normpath(osp.abspath(path)).split(os.sep))


def _copy(obj):
    """A copy of parsed YAML: dicts and lists copied, immutable leaves shared (several
    times faster than :func:`copy.deepcopy` on the 52 metafiles)."""
    if type(obj) is dict:
        return {k: _copy(v) for k, v in obj.items()}
    if type(obj) is list:
        return [_copy(v) for v in obj]
    return obj if isinstance(obj, _IMMUTABLE) else copy.deepcopy(obj)


def memoized_load(load):
    """``load`` (MMEngine's ``fileio.load``) with the YAML files of ``.mim`` folders
    parsed once per (path, size, modification time); other calls pass through."""
    parsed = {}

    def memo_load(file, *args, **kwargs):
        if args or kwargs or not _is_metafile(file):
            return load(file, *args, **kwargs)
        path = osp.abspath(file)
        stamp = _stamp(path)
        hit = parsed.get(path)
        if hit is None or hit[0] != stamp:
            hit = parsed[path] = (stamp, load(file))
        return _copy(hit[1])

    setattr(memo_load, _MARK, True)
    memo_load.__wrapped__ = load
    return memo_load


def memoize_metafile_reads():
    """Installs :func:`memoized_load` as the reader of MMEngine's ``pkg::`` config
    lookup (once; the same on both OpenMMLab lines)."""
    from mmengine.config import utils
    if not getattr(utils.load, _MARK, False):
        utils.load = memoized_load(utils.load)
