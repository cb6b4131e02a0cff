"""A pool's images under a deterministic pipeline, with every failure told apart.

ADS scoring and teacher labelling read the pool through :class:`ScoreView`. A
failure comes back as a record rather than an exception, so that DataLoader
workers hand it back intact and the caller decides: an unreadable file is skipped
and counted, a pipeline (config) error stops at the first image naming the
transform, a transient ``OSError`` is retried here and, if it lasts, stops the run
without being cached.
"""
import copy
import time

from mmengine.dataset import Compose
from torch.utils.data import Dataset

from .image_header import is_transient_oserror

# modules whose errors, raised by the loading transform, mean a bad file: cv2.error,
# zlib.error, struct.error, tifffile/imageio decoder errors
_DECODER_MODULES = ('cv2', 'zlib', 'struct', 'PIL', 'tifffile', 'imageio', 'turbojpeg')


def is_unreadable_error(exc):
    """Whether a failure of the *loading* transform belongs to the file (skip it)
    rather than to the pipeline (stop): a missing/unreadable file or a decoder
    error. KeyError/TypeError/AttributeError/... there are config errors."""
    if isinstance(exc, OSError):  # includes PIL.UnidentifiedImageError
        return not is_transient_oserror(exc)
    if isinstance(exc, (AssertionError, ValueError, EOFError, SyntaxError, MemoryError)):
        return True
    mod = type(exc).__module__ or ''
    return mod.split('.')[0] in _DECODER_MODULES or type(exc).__name__ == 'error'


def transform_name(t):
    """A pipeline step's name: its config ``type``, or its class name."""
    return t.get('type', '?') if isinstance(t, dict) else type(t).__name__


def collate_records(batch):
    """DataLoader ``collate_fn`` that keeps a batch as its list of records: images of
    one batch may differ in shape, and a record may be a failure."""
    return batch


class ScoreView(Dataset):
    """The pool's samples under the score pipeline. A failure is returned as a
    record instead of raising (so DataLoader workers hand it back intact):

    - ``kind='unreadable'``: the loading transform (the first) failed on the file;
    - ``kind='pipeline'``: any other failure, named by transform and file;
    - ``kind='transient'``: an ``OSError`` such as EIO/EMFILE/ESTALE that
      outlasted ``io_retries`` retries (waits ``retry_delay * 2**k``).

    A loaded image is ``dict(index, inputs, data_samples)``.
    """

    def __init__(self, pool, indices, pipeline, io_retries=3, retry_delay=0.2):
        self.pool = pool
        self.indices = list(indices)
        from mmseg.registry import TRANSFORMS
        self.names = [transform_name(t) for t in pipeline]
        self.transforms = [TRANSFORMS.build(copy.deepcopy(t)) if isinstance(t, dict) else t
                           for t in pipeline]
        self.pipeline = Compose(self.transforms)
        self.io_retries = io_retries
        self.retry_delay = retry_delay
        self._broken = None  # a pipeline error: the rest of this process's share is not run

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        index = self.indices[k]
        if self._broken is not None:
            return dict(self._broken, index=index)
        base = self.pool.get_data_info(index)
        path = base.get('img_path', index)
        for attempt in range(self.io_retries + 1):
            rec = self._apply(index, path, copy.deepcopy(base))
            if rec.get('kind') != 'transient' or attempt == self.io_retries:
                return rec
            time.sleep(self.retry_delay * 2**attempt)
        return rec

    def _apply(self, index, path, info):
        """One attempt at the pipeline on one image: its record."""
        for pos, (name, t) in enumerate(zip(self.names, self.transforms)):
            where = f'score pipeline transform #{pos} {name!r} on {path!r}'
            try:
                out = t(info)
            except Exception as e:  # classified below; nothing is swallowed silently
                msg = f'{type(e).__name__}: {e}'.strip()
                if is_transient_oserror(e):
                    return dict(index=index, kind='transient', error=f'{where}: {msg}')
                if pos == 0 and is_unreadable_error(e):
                    return dict(index=index, kind='unreadable', error=msg)
                self._broken = dict(index=index, kind='pipeline', error=f'{where} failed: {msg}')
                return self._broken
            if out is None:
                if pos == 0:
                    return dict(index=index, kind='unreadable',
                                error=f'{name} returned None (the file could not be loaded)')
                return dict(index=index, kind='pipeline',
                            error=f'{where} returned None; a score pipeline must give one '
                                  'output per image')
            info = out
        if not isinstance(info, dict) or 'inputs' not in info or 'data_samples' not in info:
            return dict(index=index, kind='pipeline',
                        error=f'the score pipeline gave no inputs/data_samples on {path!r}; '
                              'it must end with PackSegInputs')
        return dict(index=index, inputs=info['inputs'], data_samples=info['data_samples'])


__all__ = ['ScoreView', 'collate_records', 'is_unreadable_error', 'transform_name']
