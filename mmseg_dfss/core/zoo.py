"""Model-zoo configs of the installed OpenMMLab package: where ``pkg::`` paths point,
a one-line error when the installed line does not ship one, and a zoo config's weights
from the package's own metafiles.

An OpenMMLab package ships its configs and their metafiles in ``<pkg>/.mim``:
``model-index.yml`` lists the ``configs/<folder>/metafile.yaml`` files, and each
``Models`` entry there names a ``Config`` (``configs/<folder>/<name>.py``) and its
``Weights`` (a URL on the host of that release). Reading the URL from the installed
metafile keeps configs free of any host: each line's metafiles name their own.
"""
import ast
import difflib
import glob
import os
import os.path as osp
import posixpath

import yaml

from .stack import DISTRIBUTIONS, HOW_TO_INSTALL, MAINTAINED, installed_distributions

# ``teacher_checkpoint='metafile'``: the Weights of the teacher's zoo config
METAFILE = 'metafile'


class ZooConfigError(FileNotFoundError):
    """A ``pkg::`` config (or base) that the installed package does not ship."""


class MetafileError(LookupError):
    """A zoo config whose weights the installed metafiles do not give (exactly once)."""


def split_package_path(path):
    """``'mmseg::a/b.py'`` -> ``('mmseg', 'a/b.py')``; ``None`` for a plain file path."""
    if not isinstance(path, str) or '::' not in path:
        return None
    package, rel = path.split('::', 1)
    return package, rel


def package_root(package):
    """The installed package's folder (the one holding ``.mim``)."""
    from mmengine.utils import get_installed_path
    return get_installed_path(package)


def describe_installed(package):
    """``'onedl-mmsegmentation 1.4.2, the maintained line'`` for ``'mmseg'``; the
    distribution and version of any other installed package."""
    from importlib import metadata
    found = installed_distributions()
    for line, provides in DISTRIBUTIONS.items():
        for dist in provides.get(package, ()):
            if dist in found:
                name = 'the maintained line' if line == MAINTAINED else f'the {line} line'
                return f'{dist} {found[dist]}, {name}'
    dists = metadata.packages_distributions().get(package) or []
    for dist in dists:
        try:
            return f'{dist} {metadata.version(dist)}'
        except metadata.PackageNotFoundError:
            continue
    return f'{package}, not from an installed distribution'


def _configs_dir(package):
    return osp.join(package_root(package), '.mim', 'configs')


def _closest(configs_dir, rel):
    """The config of ``configs_dir`` whose relative path is closest to ``rel``."""
    names = [osp.relpath(p, configs_dir).replace(os.sep, '/')
             for p in glob.glob(osp.join(configs_dir, '**', '*.py'), recursive=True)]
    close = difflib.get_close_matches(rel, names, n=1, cutoff=0.8)
    return close[0] if close else None


def missing_config_error(path, referenced_by=None):
    """The one-line :class:`ZooConfigError` for the ``pkg::`` config ``path`` that the
    installed package lacks: names it, the installed line and version, and what to do."""
    package, rel = split_package_path(path)
    configs_dir = _configs_dir(package)
    what = f'the base {path!r} of {referenced_by!r}' if referenced_by else f'the config {path!r}'
    close = _closest(configs_dir, rel)
    hint = f"the closest it ships is '{package}::{close}'; " if close else ''
    return ZooConfigError(
        f'mmseg-dfss: {what} does not exist in the installed {package} '
        f'({describe_installed(package)}; no file {osp.join(configs_dir, rel)}): {hint}use a '
        f'config that {configs_dir} ships, or install the line whose release has it ('
        f'{HOW_TO_INSTALL})')


def resolve_package_path(path, referenced_by=None):
    """``pkg::rel/path.py`` -> the file in the installed package's ``.mim/configs``;
    :class:`ZooConfigError` (one line) when that release does not ship it."""
    package, rel = split_package_path(path)
    try:
        root = package_root(package)
    except Exception as e:  # not installed / not a package
        raise FileNotFoundError(f'config {path!r}: package {package!r} is not installed') from e
    full = osp.join(root, '.mim', 'configs', rel)
    if not osp.isfile(full):
        raise missing_config_error(path, referenced_by)
    return full


def _base_entries(path):
    """The ``_base_`` entries a config file assigns (read with ``ast``, not executed)."""
    try:
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return []  # MMEngine reports an unreadable config itself
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_' for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            if isinstance(value, str):
                found.append(value)
            elif isinstance(value, (list, tuple)):
                found += [v for v in value if isinstance(v, str)]
    return found


def check_config_bases(path, _seen=None):
    """Raises :class:`ZooConfigError` (one line) when ``path`` or a base it inherits
    from, directly or through its local bases, is a ``pkg::`` config that the
    installed package does not ship. Read before MMEngine's ``Config.fromfile``, whose
    error for it is a traceback naming only a file path."""
    seen = set() if _seen is None else _seen
    if split_package_path(path):
        path = resolve_package_path(path)
    path = osp.abspath(path)
    if path in seen or not osp.isfile(path):
        return  # a missing local file: MMEngine's error names it
    seen.add(path)
    for base in _base_entries(path):
        if split_package_path(base):
            try:
                package_root(split_package_path(base)[0])
            except Exception:
                continue  # a package that is not installed: MMEngine says so
            full = resolve_package_path(base, referenced_by=path)
        else:
            full = osp.join(osp.dirname(path), base)
        check_config_bases(full, seen)


# ----------------------------------------------------------------- metafiles
def _load_yaml(path):
    loader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
    with open(path, encoding='utf-8') as f:
        return yaml.load(f, Loader=loader) or {}


def _all_metafiles(mim):
    """The metafiles the package's ``model-index.yml`` imports (all
    ``configs/*/metafile.yaml`` without an index), and where that list came from."""
    index = osp.join(mim, 'model-index.yml')
    if osp.isfile(index):
        imports = _load_yaml(index).get('Import') or []
        return [osp.join(mim, p) for p in imports], index
    pattern = osp.join(mim, 'configs', '*', 'metafile.yaml')
    return sorted(glob.glob(pattern)), pattern


def _entries_for(metafile, config):
    if not osp.isfile(metafile):
        return []
    models = _load_yaml(metafile).get('Models') or []
    return [m for m in models if isinstance(m, dict) and isinstance(m.get('Config'), str)
            and posixpath.normpath(m['Config']) == config]


def metafile_entries(cfg_path):
    """``([(metafile, Models entry)], what was searched)`` of the zoo config ``cfg_path``
    (``'pkg::folder/name.py'``): its folder's metafile first, else every metafile of the
    package's ``model-index.yml``."""
    package, rel = split_package_path(cfg_path)
    resolve_package_path(cfg_path)  # a config this release does not ship: one line
    mim = osp.join(package_root(package), '.mim')
    config = posixpath.normpath('configs/' + rel.replace(os.sep, '/'))
    own = osp.join(mim, 'configs', posixpath.dirname(posixpath.normpath(rel)), 'metafile.yaml')
    entries, searched = [(own, e) for e in _entries_for(own, config)], own
    if not entries:
        others, listed_in = _all_metafiles(mim)
        others = [m for m in others if osp.abspath(m) != osp.abspath(own)]
        for metafile in others:
            entries += [(metafile, e) for e in _entries_for(metafile, config)]
        searched = f'{own} and the {len(others)} other metafiles listed in {listed_in}'
    return entries, searched


def metafile_weights(cfg_path):
    """The ``Weights`` URL of the zoo config ``cfg_path`` (``'mmseg::folder/name.py'``)
    in the installed package's metafiles, and the metafile it came from.

    The metafile of the config's own folder is read first, then every metafile of the
    package's ``model-index.yml``. :class:`MetafileError` (naming the config and the
    metafiles searched) when no entry lists the config, when its entries have no
    ``Weights``, or when they list different ``Weights``.
    """
    parts = split_package_path(cfg_path)
    if parts is None:
        raise MetafileError(
            f"teacher_checkpoint='{METAFILE}' needs a zoo config given as 'pkg::folder/"
            f"name.py' (e.g. 'mmseg::deeplabv3/...py'), got {cfg_path!r}: give the "
            'checkpoint as a path or URL')
    package, _ = parts
    entries, searched = metafile_entries(cfg_path)
    installed = describe_installed(package)
    if not entries:
        raise MetafileError(
            f"teacher_checkpoint='{METAFILE}': the config {cfg_path!r} is in no metafile of "
            f'the installed {package} ({installed}; searched {searched}): give '
            'teacher_checkpoint as a path or URL')
    weights = {e['Weights']: m for m, e in entries
               if isinstance(e.get('Weights'), str) and e['Weights']}
    if not weights:
        names = ', '.join(f"{e.get('Name')!r} in {m}" for m, e in entries)
        raise MetafileError(
            f"teacher_checkpoint='{METAFILE}': the metafile entry of {cfg_path!r} ({names}; "
            f'{installed}) has no Weights: give teacher_checkpoint as a path or URL')
    if len(weights) > 1:
        raise MetafileError(
            f"teacher_checkpoint='{METAFILE}': the config {cfg_path!r} is listed with "
            f'{len(weights)} different Weights ({", ".join(sorted(weights))}; in '
            f'{", ".join(sorted(set(weights.values())))}, {installed}): give '
            'teacher_checkpoint as one of them')
    (url, metafile), = weights.items()
    return url, metafile


# ----------------------------------------------------------------- model names
def zoo_model_names(package='mmseg'):
    """``{name: (cfg_path, weights URL or None)}`` of every model the installed
    package's metafiles list: a ``Models`` entry's ``Name`` and its config's file name
    (without ``.py``) both name it; ``cfg_path`` is ``'pkg::folder/name.py'``."""
    mim = osp.join(package_root(package), '.mim')
    metafiles, _ = _all_metafiles(mim)
    found = {}
    for metafile in metafiles:
        if not osp.isfile(metafile):
            continue
        for entry in _load_yaml(metafile).get('Models') or []:
            config = entry.get('Config') if isinstance(entry, dict) else None
            if not isinstance(config, str):
                continue
            rel = posixpath.normpath(config)
            rel = rel[len('configs/'):] if rel.startswith('configs/') else rel
            weights = entry.get('Weights') if isinstance(entry.get('Weights'), str) else None
            value = (f'{package}::{rel}', weights or None)
            for name in (entry.get('Name'), posixpath.splitext(posixpath.basename(rel))[0]):
                if isinstance(name, str) and name:
                    found.setdefault(name, value)
    return found


def zoo_model(name, package='mmseg', num_close=5):
    """``(cfg_path, weights)`` of the model ``name`` of the installed package's
    metafiles; :class:`ZooConfigError` (one line, with the ``num_close`` closest names)
    when no metafile lists it."""
    names = zoo_model_names(package)
    if name in names:
        return names[name]
    close = difflib.get_close_matches(name, list(names), n=num_close, cutoff=0.0)
    raise ZooConfigError(
        f'mmseg-dfss: no model {name!r} in the metafiles of the installed {package} '
        f'({describe_installed(package)}); the closest names: {", ".join(close)}')
