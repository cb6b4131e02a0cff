"""The allow-list of mmseg_dfss.core.safe_load: an MMEngine checkpoint (MessageHub with
HistoryBuffers, numpy values) of the installed MMEngine loads; anything else is refused,
``getattr`` only for HistoryBuffer's statistics, even while the process has allowed
more (onedl-mmengine allows plain ``getattr`` during its own loads)."""
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

import mmseg_dfss  # noqa: F401  (registers the safe loaders)
from mmseg_dfss.core import CheckpointRefusedError, safe_torch_load

needs_allow_list = pytest.mark.skipif(not hasattr(torch.serialization, 'add_safe_globals'),
                                      reason='torch < 2.4 has no allow-list')


class NotAllowed:
    pass


class GetattrGadget:
    """Pickles as getattr(owner, name): a lookup outside HistoryBuffer's statistics."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


def _mmengine_like_checkpoint(path):
    hub = MessageHub.get_instance('test_safe_load')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/loss', np.float64(0.25))
    hub.update_info('iter', 3)
    torch.save(
        dict(meta=dict(epoch=0, iter=3, seed=np.int64(7), hist=np.arange(4, dtype=np.float32)),
             state_dict={'w': torch.ones(2)}, message_hub=hub.state_dict()), path)


def test_mmengine_checkpoint_loads_through_mmengine_and_the_safe_loader(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    _mmengine_like_checkpoint(path)
    for ckpt in (_load_checkpoint(path, map_location='cpu'), safe_torch_load(path)):
        assert ckpt['meta']['seed'] == 7
        np.testing.assert_array_equal(ckpt['meta']['hist'], np.arange(4))
        hub = MessageHub.get_instance('test_safe_load_restored')
        hub.load_state_dict(ckpt['message_hub'])
        assert hub.get_scalar('train/loss').current() == 0.25
        assert hub.get_scalar('train/loss').statistics('mean') == 0.375


def _as_written_by_the_other_numpy(path, out):
    """``path`` with numpy.core <-> numpy._core swapped in its pickle (numpy 1 writes
    ``numpy.core.multiarray._reconstruct``, numpy 2 ``numpy._core.multiarray...``)."""
    import zipfile
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, 'w') as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith('data.pkl'):
                a, b, swap = b'numpy._core.multiarray', b'numpy.core.multiarray', b'<swap>'
                assert b'multiarray' in data and swap not in data
                data = data.replace(a, swap).replace(b, a).replace(swap, b)
            zout.writestr(item, data)


def test_a_checkpoint_from_the_other_numpy_major_loads(tmp_path):
    """The 1.2 line may run numpy 1, the maintained line numpy 2: a checkpoint saved on
    one (its MessageHub holds numpy values) is read on the other."""
    path, other = str(tmp_path / 'ckpt.pth'), str(tmp_path / 'other_numpy.pth')
    _mmengine_like_checkpoint(path)
    _as_written_by_the_other_numpy(path, other)
    ckpt = safe_torch_load(other)
    assert ckpt['meta']['seed'] == 7 and ckpt['meta']['hist'].tolist() == [0, 1, 2, 3]


@needs_allow_list
def test_other_pickled_objects_are_still_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'payload': NotAllowed()}, path)
    with pytest.raises(CheckpointRefusedError, match=r"evil\.pth' refused: it pickles "
                       r'test_safe_load\.NotAllowed'):
        safe_torch_load(path)


@needs_allow_list
@pytest.mark.parametrize('owner, name', [(np.ndarray, 'tofile'), (HistoryBuffer, 'update'),
                                         (HistoryBuffer, '__init__')])
def test_getattr_is_allowed_only_for_history_buffer_statistics(tmp_path, owner, name):
    path = str(tmp_path / 'gadget.pth')
    torch.save({'state_dict': {}, 'payload': GetattrGadget(owner, name)}, path)
    refused = rf"refused: it pickles builtins\.getattr\({owner.__name__}, '{name}'\)"
    with pytest.raises(pickle.UnpicklingError, match=refused):
        safe_torch_load(path)
    # MMEngine (onedl) allows plain getattr while it loads: not while the project does
    with torch.serialization.safe_globals([getattr, np.ndarray, HistoryBuffer]):
        with pytest.raises(pickle.UnpicklingError, match=refused):
            safe_torch_load(path)
        assert getattr in torch.serialization.get_safe_globals()  # restored afterwards


class NumpyFromfileGadget:
    """Pickles as numpy.fromfile(path): numpy, but not one of the allowed containers."""

    def __reduce__(self):
        return np.fromfile, ('/etc/hostname', )


@needs_allow_list
def test_refusals_follow_the_allow_list_on_the_checkpoint_route(tmp_path):
    """What only the project's allow-list decides, through MMEngine's checkpoint loader
    (the route of ``--resume``, ``load_from`` and ``tools/test.py``): gadgets next to
    its entries (a private ``HistoryBuffer`` attribute, a numpy callable other than
    the containers) and a foreign class are refused, while an MMEngine checkpoint
    loads. An allow-list grown too wide, or a fallback to full unpickling, fails here."""
    good = str(tmp_path / 'good.pth')
    _mmengine_like_checkpoint(good)
    gadgets = ((GetattrGadget(HistoryBuffer, '__init__'), r"getattr\(HistoryBuffer, '__init__'\)"),
               (NumpyFromfileGadget(), r'numpy\.fromfile'), (NotAllowed(), 'NotAllowed'))
    for gadget, named in gadgets:
        path = str(tmp_path / f'{type(gadget).__name__}.pth')
        torch.save({'state_dict': {'w': torch.ones(1)}, 'payload': gadget}, path)
        with pytest.raises(pickle.UnpicklingError, match=named):
            _load_checkpoint(path, map_location='cpu')
        assert _load_checkpoint(good, map_location='cpu')['meta']['seed'] == 7


# ---- downloads: one cache file per URL; zips unpacked under the URL's name ------------------


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


def test_two_urls_with_one_file_name_never_share_a_cache_file(tmp_path, hub):
    from checkpoint_server import CheckpointServer
    served = tmp_path / 'served'
    for k in ('a', 'b'):
        (served / k).mkdir(parents=True)
        torch.save({'state_dict': {'w': torch.full((2, ), float(k == 'b'))}},
                   str(served / k / 'model.pth'))
    with CheckpointServer(served) as server:
        for k in ('a', 'b', 'a'):
            ckpt = _load_checkpoint(server.url(f'{k}/model.pth'), map_location='cpu')
            assert ckpt['state_dict']['w'].tolist() == [float(k == 'b')] * 2, k
        assert server.gets == {'/a/model.pth': 1, '/b/model.pth': 1}
    assert len(os.listdir(hub)) == 2


def _one_file_zip(path, entry, payload):
    import zipfile
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr(entry, payload)


def test_a_zipped_download_is_unpacked_under_the_url_s_name(tmp_path, hub):
    """torch.hub's legacy format: one user-zipped file. Its entry name is the server's
    choice: a name like another download's cache file, or with .., writes nothing
    outside a temporary folder and replaces no other file."""
    from checkpoint_server import CheckpointServer
    from mmseg_dfss.core.safe_load import download_cache_path
    served = tmp_path / 'served'
    served.mkdir()
    torch.save({'state_dict': {'w': torch.zeros(1)}}, str(served / 'first.pth'))
    inner = tmp_path / 'inner.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}}, str(inner))
    with CheckpointServer(served) as server:
        first = server.url('first.pth')
        _load_checkpoint(first, map_location='cpu')
        victim = download_cache_path(first)
        _one_file_zip(served / 'zipped.pth', osp.basename(victim), inner.read_bytes())
        _one_file_zip(served / 'escape.pth', '../../escaped.pth', inner.read_bytes())
        ckpt = _load_checkpoint(server.url('zipped.pth'), map_location='cpu')
        assert ckpt['state_dict']['w'].tolist() == [1.0]
        assert _load_checkpoint(first, map_location='cpu')['state_dict']['w'].tolist() == [0.0]
        with pytest.raises(ValueError, match=r"entry named '\.\./\.\./escaped\.pth'"):
            _load_checkpoint(server.url('escape.pth'), map_location='cpu')
    assert not (tmp_path / 'escaped.pth').exists() and not (hub.parent / 'escaped.pth').exists()
    assert not [n for n in os.listdir(hub) if n.startswith('.unzip-')]


# ---- MMEngine's module-level loaders, called directly ---------------------------------------


class MkdirPayload:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker, )


@needs_allow_list
@pytest.mark.parametrize('name', ['_safe_torch_load', 'load_from_local'])
def test_mmengine_module_level_loaders_never_fall_back_to_full_unpickling(tmp_path, name):
    """onedl-mmengine's ``_safe_torch_load`` retries a refused file with
    ``weights_only=False``: with the plugin imported, it and ``load_from_local`` are the
    project's restricted loaders."""
    from mmengine.runner import checkpoint as mmengine_checkpoint
    if not hasattr(mmengine_checkpoint, name):
        pytest.skip(f'this MMEngine has no {name}')
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'payload': MkdirPayload(marker)}, path)
    with pytest.raises(CheckpointRefusedError, match=r'posix\.mkdir'):
        getattr(mmengine_checkpoint, name)(path, map_location='cpu')
    assert not os.path.exists(marker)
