"""An output folder belongs to the tool that made it.

A tool's ``--out`` folder gets a marker file naming the tool. A later run of the same
tool may write there again; any other tool, and any folder that already holds files
without the marker (another tool's results, the demo, the source tree), is refused with
an error naming the folder, so no documented command overwrites another one's outputs.
"""
import os
import os.path as osp

from ..core.atomic_file import atomic_write

MARKER = '.mmseg_dfss_output'


class OutputDirError(ValueError):
    """``--out`` names a folder that holds another tool's files."""


def claim_output_dir(path, tool):
    """Create ``path`` (or reuse it when empty or already ``tool``'s) and mark it as
    ``tool``'s; raise :class:`OutputDirError` otherwise. Returns ``path``."""
    marker = osp.join(path, MARKER)
    if osp.islink(path):
        raise OutputDirError(f'{tool}: --out {path} is a symbolic link; give a real folder')
    if osp.exists(path) and not osp.isdir(path):
        raise OutputDirError(f'{tool}: --out {path} exists and is not a folder')
    if osp.isdir(path) and os.listdir(path):
        owner = None
        if osp.isfile(marker) and not osp.islink(marker):
            with open(marker) as f:
                owner = f.read().strip()
        if owner != tool:
            written = f"written by {owner}" if owner else 'holds files not written by it'
            raise OutputDirError(
                f'{tool}: --out {path} {written}; give a new or empty folder '
                '(a tool never writes into another output folder)')
        return path
    os.makedirs(path, exist_ok=True)
    with atomic_write(marker) as f:
        f.write(tool + '\n')
    return path
