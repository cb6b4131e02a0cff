import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

import mmseg_dfss  # noqa: F401  (registers the allow-list)


class NotAllowed:
    pass


class GetattrGadget:
    """Pickles as getattr(np.ndarray, 'tofile'): a lookup outside HistoryBuffer."""

    def __reduce__(self):
        return getattr, (np.ndarray, 'tofile')


def _mmengine_like_checkpoint(path):
    hub = MessageHub.get_instance('test_safe_load')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/loss', np.float64(0.25))
    hub.update_info('iter', 3)
    torch.save(
        dict(meta=dict(epoch=0, iter=3, seed=np.int64(7), hist=np.arange(4, dtype=np.float32)),
             state_dict={'w': torch.ones(2)}, message_hub=hub.state_dict()), path)


def test_mmengine_checkpoint_loads_with_torch_default_weights_only(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    _mmengine_like_checkpoint(path)
    ckpt = _load_checkpoint(path, map_location='cpu')  # mmengine: plain torch.load(path)
    assert ckpt['meta']['seed'] == 7
    np.testing.assert_array_equal(ckpt['meta']['hist'], np.arange(4))
    hub = MessageHub.get_instance('test_safe_load_restored')
    hub.load_state_dict(ckpt['message_hub'])
    assert hub.get_scalar('train/loss').current() == 0.25


@pytest.mark.skipif(not hasattr(torch.serialization, 'add_safe_globals'),
                    reason='torch < 2.4 does not restrict torch.load')
def test_other_pickled_objects_are_still_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'payload': NotAllowed()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


@pytest.mark.skipif(not hasattr(torch.serialization, 'add_safe_globals'),
                    reason='torch < 2.4 does not restrict torch.load')
def test_getattr_is_allowed_only_for_history_buffer_statistics(tmp_path):
    path = str(tmp_path / 'gadget.pth')
    torch.save({'state_dict': {}, 'payload': GetattrGadget()}, path)
    with pytest.raises(pickle.UnpicklingError, match='refusing getattr'):
        torch.load(path)


class HistoryBufferInitGadget:
    """Pickles as getattr(HistoryBuffer, '__init__'): HistoryBuffer itself is allowed."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return getattr, (HistoryBuffer, '__init__')


class NumpyFromfileGadget:
    """Pickles as numpy.fromfile(path): numpy, but not one of the allowed containers."""

    def __reduce__(self):
        return np.fromfile, ('/etc/hostname', )


@pytest.mark.skipif(not hasattr(torch.serialization, 'add_safe_globals'),
                    reason='torch < 2.4 does not restrict torch.load')
def test_refusals_follow_the_allow_list_on_the_checkpoint_route(tmp_path):
    """What only the project's allow-list decides, through MMEngine's checkpoint loader
    (the route of ``--resume``, ``load_from`` and ``tools/test.py``): gadgets next to
    its entries (a private ``HistoryBuffer`` attribute, a numpy callable other than
    the containers) and a foreign class are refused, while an MMEngine checkpoint
    loads. An allow-list grown too wide, or a fallback to full unpickling, fails here."""
    good = str(tmp_path / 'good.pth')
    _mmengine_like_checkpoint(good)
    for gadget, named in ((HistoryBufferInitGadget(), r"getattr\(HistoryBuffer, '__init__'\)"),
                          (NumpyFromfileGadget(), r'numpy\.fromfile'),
                          (NotAllowed(), 'NotAllowed')):
        path = str(tmp_path / f'{type(gadget).__name__}.pth')
        torch.save({'state_dict': {'w': torch.ones(1)}, 'payload': gadget}, path)
        with pytest.raises(pickle.UnpicklingError, match=named):
            _load_checkpoint(path, map_location='cpu')
        assert _load_checkpoint(good, map_location='cpu')['meta']['seed'] == 7
