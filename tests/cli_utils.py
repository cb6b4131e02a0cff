"""What the tests of command-line runs share: a snapshot of a folder tree (to assert
that a rerun wrote nothing) and ``--cfg-options`` strings from a nested dict (to shrink
a zoo config on the command line)."""
import os
import os.path as osp


def snapshot(root):
    """(path, size, mtime_ns, inode) of every file and folder under ``root``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(osp.join(dirpath, name))
            out.append((osp.relpath(osp.join(dirpath, name), root), st.st_size,
                        st.st_mtime_ns, st.st_ino))
    return sorted(out)


def flat_options(prefix, overrides):
    """``--cfg-options`` strings setting every leaf of ``overrides`` under ``prefix``
    (a 2-tuple written as ``(a,b)``)."""
    out = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            out += flat_options(f'{prefix}.{key}', value)
        else:
            value = f'({value[0]},{value[1]})' if isinstance(value, tuple) else value
            out.append(f'{prefix}.{key}={value}')
    return out
