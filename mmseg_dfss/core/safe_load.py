"""Make MMEngine checkpoints loadable under ``torch.load(weights_only=True)``.

torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``; mmengine 0.10.x calls
it without arguments, so its own checkpoints (a ``MessageHub`` state with
``HistoryBuffer`` objects and numpy scalars/arrays) fail with ``UnpicklingError``
on ``--resume`` and ``load_from``. Rather than turning ``weights_only`` off, the
few plain-data types MMEngine itself writes are allow-listed: loading stays
restricted, and a checkpoint holding any other pickled object still fails.
"""
import pickle

import numpy as np
import torch

_registered = False


def _numpy_globals():
    """numpy callables/classes that pickle uses for arrays, dtypes and scalars."""
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    found = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    # numpy >= 1.25 pickles dtypes as instances of their numpy.dtypes classes
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        found += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType') and isinstance(getattr(dtypes, name), type)
        ]
    return found


def _history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr`` while unpickling: ``HistoryBuffer`` pickles its
    statistics methods (``HistoryBuffer.min`` ...) as ``getattr(HistoryBuffer, 'min')``;
    that lookup, and no other, is allowed."""
    from mmengine.logging import HistoryBuffer
    method = vars(HistoryBuffer).get(name) if obj is HistoryBuffer else None
    if callable(method) and not name.startswith('_'):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({getattr(obj, "__qualname__", type(obj).__name__)}, {name!r}) '
        'while loading a checkpoint')


def mmengine_safe_globals():
    """The allow-list: MMEngine's log history plus numpy containers."""
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')] + _numpy_globals()


def register_checkpoint_safe_globals() -> bool:
    """Allow-list :func:`mmengine_safe_globals` for ``torch.load``.

    Returns False on torch versions without ``add_safe_globals`` (< 2.4), where
    ``torch.load`` does not default to ``weights_only`` and nothing is needed.
    """
    global _registered
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:
        return False
    if not _registered:
        add(mmengine_safe_globals())
        _registered = True
    return True
