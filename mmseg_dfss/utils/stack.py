"""Which OpenMMLab line is installed, refused when mixed, missing or too old.

Two lines provide the same import names (``mmengine``, ``mmcv``, ``mmseg``):

* the maintained line (the default): ``onedl-mmengine``, ``onedl-mmcv``,
  ``onedl-mmsegmentation``;
* OpenMMLab's 1.2 line: ``mmengine``, ``mmcv`` (compiled ops), ``mmsegmentation``.

Both in one environment overwrite each other's files, so :func:`check_stack` runs
first thing on ``import mmseg_dfss`` and reads only distribution metadata (nothing is
imported). :func:`map_mmseg_scope` lets onedl-mmengine resolve ``mmseg::`` config
bases, which it looks up under the distribution name ``mmsegmentation``.
"""
import re
from importlib import metadata

# import name -> (maintained line's distribution, 1.2 line's distributions)
DISTRIBUTIONS = {
    'mmengine': ('onedl-mmengine', ('mmengine', 'mmengine-lite')),
    'mmcv': ('onedl-mmcv', ('mmcv', 'mmcv-full')),
    'mmseg': ('onedl-mmsegmentation', ('mmsegmentation', )),
}
# oldest supported release of each distribution (the versions the tests run are in the README)
MINIMUM = {
    'onedl-mmengine': (0, 10, 0), 'onedl-mmcv': (2, 2, 0), 'onedl-mmsegmentation': (1, 3, 0),
    'mmengine': (0, 10, 0), 'mmcv': (2, 0, 0), 'mmsegmentation': (1, 2, 0),
}
MAINTAINED, LEGACY = 'maintained', '1.2'
HOW_TO_INSTALL = (
    'supported: the maintained line (`pip install -e .[maintained]`: onedl-mmengine>=0.10, '
    'onedl-mmcv>=2.2, onedl-mmsegmentation>=1.3; `bash scripts/setup_env.sh`) or the 1.2 line '
    '(`DFSS_STACK=1.2 bash scripts/setup_env.sh`: mmengine 0.10, mmcv 2.1 with ops, '
    'mmsegmentation 1.2), each in its own virtualenv')


class StackError(ImportError):
    """The installed OpenMMLab packages are not one supported line."""


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _as_tuple(version):
    return tuple(int(x) for x in re.findall(r'\d+', version)[:3])


def installed_distributions():
    """``{distribution: version}`` of every OpenMMLab distribution either line ships."""
    found = {}
    for maintained, legacy in DISTRIBUTIONS.values():
        for dist in (maintained, ) + legacy:
            version = _version(dist)
            if version is not None:
                found[dist] = version
    return found


def detect_stack(found=None):
    """``'maintained'`` or ``'1.2'``; :class:`StackError` (one line) on a mixed,
    incomplete, missing or too old stack."""
    found = installed_distributions() if found is None else found
    lines = {MAINTAINED: [], LEGACY: []}
    for maintained, legacy in DISTRIBUTIONS.values():
        lines[MAINTAINED] += [maintained] if maintained in found else []
        lines[LEGACY] += [d for d in legacy if d in found]
    listed = ', '.join(f'{d} {v}' for d, v in sorted(found.items()))
    if lines[MAINTAINED] and lines[LEGACY]:
        raise StackError(f'mmseg-dfss: both OpenMMLab lines are installed in one environment '
                         f'({listed}); they share import names and overwrite each other. '
                         f'Use a new virtualenv; {HOW_TO_INSTALL}')
    line = MAINTAINED if lines[MAINTAINED] else LEGACY
    present = {imp for imp, (maintained, legacy) in DISTRIBUTIONS.items()
               if any(d in found for d in ((maintained, ) if line == MAINTAINED else legacy))}
    missing = sorted(set(DISTRIBUTIONS) - present)
    if missing:
        raise StackError(f'mmseg-dfss: no complete OpenMMLab line installed (missing '
                         f'{", ".join(missing)}; found: {listed or "nothing"}); {HOW_TO_INSTALL}')
    old = [f'{d} {v} (< {".".join(map(str, MINIMUM[d]))})' for d, v in sorted(found.items())
           if d in MINIMUM and _as_tuple(v) < MINIMUM[d]]
    if old:
        raise StackError(f'mmseg-dfss: OpenMMLab packages older than supported: '
                         f'{", ".join(old)}; {HOW_TO_INSTALL}')
    return line


def check_stack():
    """:func:`detect_stack` on the running environment."""
    return detect_stack()


def map_mmseg_scope(line=None):
    """Point MMEngine's ``mmseg::`` lookup at the installed MMSeg distribution.

    onedl-mmengine resolves ``mmseg::`` config bases through the distribution named
    ``mmsegmentation``; on the maintained line that is ``onedl-mmsegmentation``.
    """
    line = line or detect_stack()
    from mmengine.config import utils as config_utils
    dist = 'onedl-mmsegmentation' if line == MAINTAINED else 'mmsegmentation'
    config_utils.MODULE2PACKAGE['mmseg'] = dist
    return dist
