"""The checked stand-ins of the checkpoint allow-list: numpy values load only with plain
numeric dtypes (a hostile dtype is a CheckpointRefusedError, never a crash), and a
HistoryBuffer is rebuilt from its own fields without touching the statistics methods
every HistoryBuffer of the process shares."""
import json
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from conftest import run_python
from mmengine.logging import HistoryBuffer

import mmseg_dfss  # noqa: F401  (registers the safe loaders)
from mmseg_dfss.core import CheckpointRefusedError, safe_torch_load

pytestmark = pytest.mark.skipif(not hasattr(torch.serialization, 'add_safe_globals'),
                                reason='torch < 2.4 has no allow-list')

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar


class Reduce:
    """Pickles as ``func(*args)`` (then ``BUILD state`` when a state is given)."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args,
                                                                  self.state)


def _overlapping_dtype():
    """A structured dtype whose object field lies over an int64 field, rebuilt by
    ``dtype.__setstate__`` (numpy's own constructor refuses the overlap), its flags
    saying it holds no object (so numpy reads its data from bytes)."""
    fields = {'obj': (np.dtype('O'), 0), 'int': (np.dtype('<i8'), 0)}
    return Reduce(np.dtype, ('V8', False, True), (3, '|', None, ('obj', 'int'), fields, 8, 1, 0))


HOSTILE = {
    # an array over that dtype: its bytes (an integer) are read as an object pointer
    'structured dtype, object over int64': Reduce(
        _reconstruct, (np.ndarray, (0, ), b'b'),
        (1, (1, ), _overlapping_dtype(), False, (0x4141414141).to_bytes(8, 'little'))),
    'numpy scalar of that dtype': Reduce(
        scalar, (_overlapping_dtype(), (0x4141414141).to_bytes(8, 'little'))),
    'object dtype': Reduce(np.dtype, ('O8', False, True), (3, '|', None, None, None, -1, -1, 63)),
    'void dtype': Reduce(np.dtype, ('V8', False, True), (3, '|', None, None, None, 8, 1, 0)),
    'sub-array dtype': Reduce(np.dtype, ('(2,)i8', False, True)),
    # numpy.ndarray called over a buffer, with an object field in a structured dtype
    'ndarray over a buffer': Reduce(np.ndarray, ((1, ), [('a', 'O')],
                                                 (0x4141414141).to_bytes(8, 'little'))),
    'scalar of object dtype': Reduce(scalar, (Reduce(np.dtype, ('O8', False, True)), b'\0' * 8)),
    'scalar from too few bytes': Reduce(scalar, (Reduce(np.dtype, ('f8', False, True)), b'\0')),
}

LOAD_ALL = """
import json, sys
import mmseg_dfss
from mmengine.runner.checkpoint import _load_checkpoint
results = {}
for name, path in json.load(open(sys.argv[1])).items():
    print('loading', name, flush=True)  # a crash names the last one tried
    try:
        results[name] = 'loaded: ' + repr(_load_checkpoint(path, map_location='cpu'))[-80:]
    except Exception as e:
        results[name] = type(e).__name__ + ': ' + str(e)
print(json.dumps(results))
"""


def test_hostile_numpy_values_are_refused_not_crashed(tmp_path, repo_root):
    """Through MMEngine's checkpoint loader (teacher, load_from), in a subprocess: a
    crash there fails this test instead of killing pytest."""
    paths = {}
    for k, (name, payload) in enumerate(HOSTILE.items()):
        paths[name] = str(tmp_path / f'hostile_{k}.pth')
        torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'x': payload}}, paths[name])
    with open(tmp_path / 'paths.json', 'w') as f:
        json.dump(paths, f)
    (tmp_path / 'load_all.py').write_text(LOAD_ALL)
    proc = run_python(tmp_path / 'load_all.py', tmp_path / 'paths.json', timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, path in paths.items():
        assert results[name].startswith('CheckpointRefusedError: '), (name, results[name])
        assert osp.basename(path) in results[name] and 'refused' in results[name]


@pytest.mark.parametrize('dtype', ['?', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2',
                                   'f4', '>f4', 'f8', 'c8', 'c16'])
def test_plain_numeric_numpy_values_load(tmp_path, dtype):
    array = np.arange(6).reshape(2, 3).astype(dtype)
    value = dict(array=array, fortran=np.asfortranarray(array), scalar=array.reshape(-1)[1],
                 dtype=array.dtype, empty=np.zeros((0, 2), dtype))
    path = str(tmp_path / 'ok.pth')
    torch.save({'meta': value}, path)
    loaded = safe_torch_load(path)['meta']
    for key in ('array', 'fortran', 'empty'):
        # numpy's own unpickling gives an array of a big-endian dtype in native order
        unpickled = pickle.loads(pickle.dumps(value[key], protocol=2))
        assert loaded[key].dtype == unpickled.dtype and type(loaded[key]) is np.ndarray
        np.testing.assert_array_equal(loaded[key], value[key])
    assert loaded['scalar'] == value['scalar'] and loaded['scalar'].dtype == value['scalar'].dtype
    assert loaded['dtype'] == np.dtype(dtype)


def test_a_loaded_big_endian_dtype_leaves_numpy_s_own_dtype_alone(tmp_path):
    """The rebuild sets the byte order on a copy (numpy's dtype(..., copy=True)); had it
    set numpy's shared float32 dtype, every float32 in the process would turn."""
    path = str(tmp_path / 'be.pth')
    torch.save({'meta': np.dtype('>f4')}, path)
    assert safe_torch_load(path)['meta'] == np.dtype('>f4')
    assert np.dtype('f4').byteorder == '=' and np.float32(1.5).tobytes() == \
        np.array([1.5], '<f4').tobytes()


def _save_history_buffer(path, monkeypatch, statistics_methods, **extra):
    """Saves a HistoryBuffer pickled as MMEngine pickles it (NEWOBJ + state), its state
    being the given one."""
    state = dict(max_length=10, _log_history=np.array([1.0, 3.0]),
                 _count_history=np.array([1, 1]), statistics_methods=statistics_methods,
                 **extra)
    with monkeypatch.context() as m:
        m.setattr(HistoryBuffer, '__getstate__', lambda self: state)
        torch.save({'message_hub': {'log': HistoryBuffer()}}, path)


def test_history_buffer_state_cannot_change_the_shared_statistics(tmp_path, monkeypatch):
    HistoryBuffer()  # the shared statistics are set by the first buffer made
    before = dict(HistoryBuffer._statistics_methods)
    path = str(tmp_path / 'swapped.pth')
    _save_history_buffer(path, monkeypatch, {'mean': HistoryBuffer.max})
    with pytest.raises(CheckpointRefusedError, match="statistics method 'mean' -> "
                       'HistoryBuffer.max'):
        safe_torch_load(path)
    assert HistoryBuffer._statistics_methods == before
    assert HistoryBuffer([1.0, 3.0], [1, 1]).statistics('mean') == 2.0

    extra = str(tmp_path / 'extra_field.pth')
    _save_history_buffer(extra, monkeypatch, {}, update=np.float64(1))
    with pytest.raises(CheckpointRefusedError, match=r"fields \['update'\]"):
        safe_torch_load(extra)


def test_history_buffer_loads_as_mmengine_s_own(tmp_path):
    path = str(tmp_path / 'hub.pth')
    buffer = HistoryBuffer([1.0, 3.0], [1, 1])
    torch.save({'log': buffer}, path)  # its state holds the shared statistics methods
    before = dict(HistoryBuffer._statistics_methods)
    loaded = safe_torch_load(path)['log']
    assert type(loaded) is HistoryBuffer
    assert loaded.statistics('mean') == 2.0 and loaded.max_length == buffer.max_length
    assert 'statistics_methods' not in vars(loaded)
    assert HistoryBuffer._statistics_methods == before
