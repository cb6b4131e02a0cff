"""Writing a file by a fresh temporary name next to it, then ``os.replace``.

A fixed temporary name (``path + '.tmp'``) in a shared folder follows a link someone
planted there; writing into an existing file writes through any hard link to it (a
user's original image). ``tempfile.mkstemp`` creates a new file under a name nobody
could predict (``O_EXCL``: never an existing file or link), and ``os.replace`` swaps
the directory entry: whatever ``path`` was before (a file, a link) is not written to.
Readers see the old file or the whole new one, never a part. Files that grow by
appending (:func:`open_for_append`) refuse a link in their place.
"""
import contextlib
import os
import os.path as osp
import shutil
import tempfile


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextlib.contextmanager
def atomic_write(path, mode='w', **open_kwargs):
    """``with atomic_write(path, 'wb') as f: f.write(...)``: ``path`` appears complete
    when the block ends without error; on error nothing is left behind."""
    folder = osp.dirname(osp.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a written file is as open()'s
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_copy(src, dst):
    """Copies the bytes of ``src`` to a new file at ``dst`` (never a link to ``src``, never
    written through whatever ``dst`` was)."""
    with open(src, 'rb') as fin, atomic_write(dst, 'wb') as fout:
        shutil.copyfileobj(fin, fout)


def save_figure(fig, path, **savefig_kwargs):
    """``fig.savefig(path)`` through :func:`atomic_write`, in the format ``path``'s
    suffix names."""
    fmt = osp.splitext(path)[1].lstrip('.').lower() or 'png'
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format=fmt, **savefig_kwargs)


def open_for_append(path):
    """``open(path, 'ab')`` that refuses a symbolic link at ``path`` (``O_NOFOLLOW``): a link
    planted in a shared folder would have the appended lines written into its target."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if osp.islink(path):
            raise OSError(f'{path!r} is a symbolic link; files are never appended to through '
                          'a link (remove it)') from e
        raise
    return os.fdopen(fd, 'ab')
