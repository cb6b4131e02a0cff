"""Runs MMSeg's own command-line tools (shipped in the installed package) in-process."""
import os.path as osp
import runpy
import sys


def find_mmseg_tool(name):
    """Path of MMSeg's ``tools/<name>``: in the installed package's ``.mim`` folder,
    or in the source tree of an editable MMSeg install."""
    import mmseg
    pkg = osp.dirname(mmseg.__file__)
    for candidate in (osp.join(pkg, '.mim', 'tools', name),
                      osp.join(osp.dirname(pkg), 'tools', name)):
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f'MMSeg tool {name!r} not found under {pkg}/.mim/tools or the MMSeg source tree; '
        'install mmsegmentation from PyPI (its wheel ships the tools) or from source')


def run_mmseg_tool(name, argv=None):
    """Executes MMSeg's ``tools/<name>`` as ``__main__`` with ``argv`` (default:
    this process's arguments), so every flag of MMSeg's tool works unchanged."""
    path = find_mmseg_tool(name)
    sys.argv = [path] + list(sys.argv[1:] if argv is None else argv)
    runpy.run_path(path, run_name='__main__')
