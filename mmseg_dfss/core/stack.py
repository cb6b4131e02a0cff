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

MAINTAINED, LEGACY = 'maintained', '1.2'
# line -> import name -> the distributions that provide it
DISTRIBUTIONS = {
    MAINTAINED: {'mmengine': ('onedl-mmengine', ), 'mmcv': ('onedl-mmcv', ),
                 'mmseg': ('onedl-mmsegmentation', )},
    LEGACY: {'mmengine': ('mmengine', 'mmengine-lite'), 'mmcv': ('mmcv', 'mmcv-full'),
             'mmseg': ('mmsegmentation', )},
}
# what each line's extra installs (setup.py reads this file; the minima are the oldest
# releases checked, the README lists the versions the tests run on)
REQUIREMENTS = {
    MAINTAINED: ['onedl-mmengine>=0.10.12,<0.11', 'onedl-mmcv>=2.3.6,<2.4',
                 'onedl-mmsegmentation>=1.4.2,<1.5', 'numpy>=2'],
    LEGACY: ['mmengine>=0.10.7,<0.11', 'mmcv>=2.1.0,<2.2.0', 'mmsegmentation>=1.2.2,<1.3.0'],
}


def _minimum(spec):
    """``'mmcv>=2.1.0,<2.2.0'`` -> ``('mmcv', (2, 1, 0))``."""
    name, low = re.match(r'([\w-]+)>=([\d.]+)', spec).groups()
    return name, tuple(int(x) for x in low.split('.'))


MINIMUM = dict(_minimum(spec) for specs in REQUIREMENTS.values() for spec in specs
               if spec.startswith(('onedl-', 'mm')))
HOW_TO_INSTALL = (
    'supported: the maintained line (default; `bash scripts/setup_env.sh`, or '
    '`pip install -e .[maintained]`: ' + ', '.join(REQUIREMENTS[MAINTAINED][:3]) + ') or '
    "OpenMMLab's 1.2 line (`DFSS_STACK=1.2 bash scripts/setup_env.sh`: "
    + ', '.join(REQUIREMENTS[LEGACY]) + ', mmcv compiled with ops), each in its own virtualenv')


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
    for provides in DISTRIBUTIONS.values():
        for dist in sum(provides.values(), ()):
            version = _version(dist)
            if version is not None:
                found[dist] = version
    return found


def lines_present(found=None):
    """The lines that have at least one distribution installed (``[]``, one, or both)."""
    found = installed_distributions() if found is None else found
    return [line for line, provides in DISTRIBUTIONS.items()
            if any(d in found for d in sum(provides.values(), ()))]


def detect_stack(found=None):
    """``'maintained'`` or ``'1.2'``; :class:`StackError` (one line) on a mixed,
    incomplete, missing or too old stack."""
    found = installed_distributions() if found is None else found
    present = lines_present(found)
    listed = ', '.join(f'{d} {v}' for d, v in sorted(found.items()))
    if len(present) > 1:
        raise StackError(f'mmseg-dfss: both OpenMMLab lines are installed in one environment '
                         f'({listed}); they share import names and overwrite each other. '
                         f'Use a new virtualenv; {HOW_TO_INSTALL}')
    line = present[0] if present else MAINTAINED
    missing = sorted(imp for imp, dists in DISTRIBUTIONS[line].items()
                     if not any(d in found for d in dists))
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


if __name__ == '__main__':  # scripts/setup_env.sh: which line a virtualenv holds
    print(' '.join(lines_present()))
