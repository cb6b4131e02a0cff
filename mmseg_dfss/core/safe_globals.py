"""The pickled globals a checkpoint may name, each a checked stand-in for the real one.

``torch.load(weights_only=True)`` calls whatever allow-listed global a pickle names,
with arguments the pickle chooses, and rebuilds allow-listed classes with a state the
pickle chooses. The real ``numpy.dtype`` and ``numpy.ndarray`` are too powerful for that:
a structured dtype whose object field overlaps an integer (or an array made over a
buffer with such a dtype) turns an integer from the file into an object pointer.
``HistoryBuffer.__setstate__`` updates a dict shared by every ``HistoryBuffer`` of the
process. So the names a pickle can use resolve to stand-ins that build only:

- numpy dtypes of plain numeric kinds (bool, integers, unsigned, floats, complex): no
  object, void, structured, sub-array, string or datetime dtype;
- numpy arrays and scalars of those dtypes, from bytes of the exact size;
- ``HistoryBuffer`` objects from their own fields, the shared statistics untouched;
- ``getattr`` only as ``getattr(HistoryBuffer, 'min'|'max'|'mean'|'current')``;
- ``bytes`` only as ``bytes()`` (an empty array's data).

Anything else raises ``pickle.UnpicklingError`` ("refusing ..."), which
:func:`mmseg_dfss.core.safe_load.safe_torch_load` reports as ``CheckpointRefusedError``.
The real classes stay allow-listed for the rebuild step only, under names that hold a
newline: a pickle's ``GLOBAL`` reads names line by line, so it can never name them.
"""
import pickle

import numpy as np

PLAIN_DTYPE_KINDS = 'biufc'  # bool, signed, unsigned, float, complex
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'mean', 'current')
HISTORY_BUFFER_FIELDS = ('max_length', '_log_history', '_count_history')
# a GLOBAL opcode's name never holds a newline: what is registered under one is reachable
# by torch's BUILD type check only, never by a pickle
_BUILD_ONLY = 'mmseg_dfss: rebuild only\n'


def _multiarray():
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _is_plain(dtype):
    return (isinstance(dtype, np.dtype) and dtype.kind in PLAIN_DTYPE_KINDS
            and dtype.fields is None and dtype.subdtype is None and not dtype.hasobject)


def _refuse(what):
    raise pickle.UnpicklingError(f'refusing {what} while loading a checkpoint (numpy values '
                                 'in a checkpoint are plain numeric dtypes only)')


def plain_dtype(obj, align=False, copy=False):
    """Stands in for ``numpy.dtype(obj, align, copy)``: a plain numeric dtype, always a new
    object (the rebuild step then sets its byte order on this copy, not numpy's own)."""
    if not isinstance(obj, str):
        _refuse(f'numpy dtype from a {type(obj).__name__}')
    try:
        dtype = np.dtype(obj, bool(align), True)
    except (TypeError, ValueError):
        _refuse(f'numpy dtype {obj!r}')
    if not _is_plain(dtype):
        _refuse(f'numpy dtype {obj!r}')
    return dtype


def plain_reconstruct(subtype, shape, dtype_code):
    """Stands in for numpy's ``_reconstruct``: an empty plain ``ndarray`` that the rebuild
    step fills (``ndarray.__setstate__`` with a dtype from :func:`plain_dtype`)."""
    if subtype is not NDARRAY_NAME_TARGET:
        _refuse(f'numpy _reconstruct of {subtype!r}')
    return _multiarray()._reconstruct(np.ndarray, (0, ), b'b')


def plain_scalar(dtype, data=None):
    """Stands in for numpy's ``scalar(dtype, bytes)``: a numeric scalar from exactly
    ``dtype.itemsize`` bytes."""
    if not _is_plain(dtype):
        _refuse(f'numpy scalar of dtype {dtype!r}')
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        _refuse(f'numpy scalar of {dtype} from {type(data).__name__} of the wrong size')
    return _multiarray().scalar(dtype, data)


def empty_bytes(*args):
    """Stands in for ``bytes``: pickle protocol 2 writes ``b''`` (an empty array's data)
    as ``bytes()``; with arguments it could allocate any size."""
    if args:
        raise pickle.UnpicklingError(f'refusing bytes{args!r} while loading a checkpoint')
    return b''


class _NDArrayName:
    """What the name ``numpy.ndarray`` means in a checkpoint: the argument of
    :func:`plain_reconstruct`, nothing that can be called or built."""

    def __new__(cls, *args, **kwargs):
        _refuse('numpy.ndarray(...) called directly')


_NDArrayName.__qualname__ = 'ndarray'  # as errors name it: what the pickle wrote
NDARRAY_NAME_TARGET = _NDArrayName


def _history_buffer_stand_in():
    from mmengine.logging import HistoryBuffer

    class CheckedHistoryBuffer(HistoryBuffer):
        """Rebuilds a ``HistoryBuffer`` from its own fields, leaving the statistics
        methods shared by all buffers as they are; then becomes a plain
        ``HistoryBuffer`` (so the object pickles and behaves as MMEngine's own)."""

        def __setstate__(self, state):
            if not isinstance(state, dict):
                raise pickle.UnpicklingError(
                    f'refusing HistoryBuffer state of type {type(state).__name__}')
            state = dict(state)
            for name, method in dict(state.pop('statistics_methods', {}) or {}).items():
                if name not in HISTORY_BUFFER_STATISTICS or method is not getattr(
                        HistoryBuffer, name):
                    raise pickle.UnpicklingError(
                        f'refusing HistoryBuffer state: statistics method {name!r} -> '
                        f'{getattr(method, "__qualname__", type(method).__name__)}')
            unknown = sorted(set(state) - set(HISTORY_BUFFER_FIELDS))
            if unknown:
                raise pickle.UnpicklingError(f'refusing HistoryBuffer state: fields {unknown}')
            self.__dict__.update(state)
            self.__class__ = HistoryBuffer
            # what HistoryBuffer.__init__ does: a process whose buffers all came from a
            # checkpoint has the shared min/max/mean/current registered too
            self._set_default_statistics()

    CheckedHistoryBuffer.__qualname__ = HistoryBuffer.__qualname__
    return HistoryBuffer, CheckedHistoryBuffer


_STAND_INS = {}


def _history_buffer_classes():
    """(``HistoryBuffer``, its checked stand-in), made once."""
    if 'history_buffer' not in _STAND_INS:
        _STAND_INS['history_buffer'] = _history_buffer_stand_in()
    return _STAND_INS['history_buffer']


def history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr``: ``HistoryBuffer`` pickles its statistics
    methods (``HistoryBuffer.min`` ...) as ``getattr(HistoryBuffer, 'min')`` (both MMEngine
    lines); that lookup, and no other, is allowed."""
    history_buffer, checked = _history_buffer_classes()
    if obj in (history_buffer, checked) and name in HISTORY_BUFFER_STATISTICS:
        return getattr(history_buffer, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({getattr(obj, "__qualname__", type(obj).__name__)}, {name!r}) '
        'while loading a checkpoint')


def _plain_dtype_classes():
    """The classes of plain numeric dtypes (numpy >= 1.25: ``numpy.dtypes.Float32DType``
    ...; before: ``numpy.dtype`` itself), which the rebuild step checks for."""
    found = []
    for code in '?' + np.typecodes['AllInteger'] + np.typecodes['AllFloat']:
        try:
            dtype = np.dtype(code)
        except TypeError:  # a type code this numpy does not know
            continue
        if _is_plain(dtype) and type(dtype) not in found:
            found.append(type(dtype))
    return found


def checkpoint_safe_globals():
    """``torch.serialization.add_safe_globals`` entries: ``(stand-in, name a pickle
    uses)``, plus the real classes under build-only names."""
    history_buffer, checked = _history_buffer_classes()
    entries = [(checked, f'{history_buffer.__module__}.{history_buffer.__qualname__}'),
               (history_buffer_getattr, 'builtins.getattr'),
               (plain_dtype, 'numpy.dtype'), (_NDArrayName, 'numpy.ndarray'),
               (empty_bytes, 'builtins.bytes')]
    # numpy 1 writes numpy.core.multiarray, numpy 2 numpy._core.multiarray (checkpoints
    # travel between the two OpenMMLab lines)
    for module in ('numpy.core', 'numpy._core'):
        entries += [(plain_reconstruct, f'{module}.multiarray._reconstruct'),
                    (plain_scalar, f'{module}.multiarray.scalar')]
    entries += [(cls, f'{_BUILD_ONLY}{cls.__module__}.{cls.__qualname__}')
                for cls in [np.ndarray] + _plain_dtype_classes()]
    return entries
