"""Teacher checkpoints wherever MMEngine's CheckpointLoader reads them: a checkpoint
served over HTTP from 127.0.0.1 (downloaded once into the torch hub cache, loaded
strictly and weights_only), failing URLs named in the error, an ``open-mmlab://`` name
mapped through ``$MMENGINE_HOME/open_mmlab.json``; and the opt-in for random teachers."""
import json
import os
import os.path as osp
import pickle
import re
import shutil

import pytest
import torch
from checkpoint_server import CheckpointServer, refused_url

from mmseg_dfss.core import PoolScorer, build_frozen_segmentor
from mmseg_dfss.core.teacher import build_segmentor, checkpoint_state_dict
from mmseg_dfss.models import DataFreeDistiller

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'


class Payload:
    """Unpickling it would create the folder ``marker`` (arbitrary code execution)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker, )


@pytest.fixture(scope='module')
def served(tmp_path_factory, repo_root):
    """A folder with a random-weight teacher checkpoint (unique weights, seed 3)."""
    root = tmp_path_factory.mktemp('served')
    torch.manual_seed(3)
    model = build_segmentor(osp.join(repo_root, TEACHER))
    model.init_weights()
    state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    torch.save(dict(meta=dict(note='fabricated'), state_dict=state), str(root / 'teacher.pth'))
    return root, state


@pytest.fixture
def server(served, tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))  # isolated hub cache
    with CheckpointServer(served[0]) as srv:
        yield srv


def assert_weights(model, state):
    own = model.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k


def test_http_checkpoint_is_downloaded_once_and_loaded_strictly(repo_root, served, server,
                                                                tmp_path):
    url = server.url('teacher.pth')
    for _ in range(2):
        assert_weights(build_frozen_segmentor(osp.join(repo_root, TEACHER), url), served[1])
    assert server.gets == {'/teacher.pth': 1}  # the second build read the hub cache
    from mmseg_dfss.core.safe_load import download_cache_path
    cached = download_cache_path(url)
    assert osp.dirname(cached) == str(tmp_path / 'torch_home' / 'hub' / 'checkpoints')
    assert osp.isfile(cached) and cached.endswith('-teacher.pth')


def test_http_checkpoint_that_does_not_fit_names_the_url_and_keys(repo_root, served, server):
    state = dict(served[1])
    del state['decode_head.conv_seg.weight']
    torch.save(dict(state_dict=state), str(served[0] / 'partial.pth'))
    url = server.url('partial.pth')
    with pytest.raises(KeyError, match=re.escape(url) + '.*missing keys.*conv_seg.weight'):
        build_frozen_segmentor(osp.join(repo_root, TEACHER), url)


def test_404_names_the_url(repo_root, server):
    url = server.url('no_such_teacher.pth')
    with pytest.raises(OSError, match=re.escape(url) + '.*404'):
        build_frozen_segmentor(osp.join(repo_root, TEACHER), url)


def test_refused_connection_names_the_url(repo_root, monkeypatch, tmp_path):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    url = refused_url()
    with pytest.raises(OSError, match=re.escape(url) + '.*(refused|Errno)'):
        checkpoint_state_dict(url, 'teacher checkpoint')


@pytest.mark.skipif(not hasattr(torch.serialization, 'add_safe_globals'),
                    reason='torch < 2.4 does not restrict torch.load')
def test_http_checkpoint_with_a_pickled_object_is_refused(repo_root, served, server, tmp_path):
    # torch.hub (used by MMEngine's http loader) unpickles with weights_only=False
    marker = str(tmp_path / 'code_ran')
    torch.save(dict(state_dict=served[1], meta=dict(note=Payload(marker))),
               str(served[0] / 'evil.pth'))
    url = server.url('evil.pth')
    with pytest.raises(pickle.UnpicklingError, match=re.escape(url)):
        build_frozen_segmentor(osp.join(repo_root, TEACHER), url)
    assert not osp.exists(marker)


def test_open_mmlab_name_through_mmengine_home(repo_root, served, server, tmp_path,
                                               monkeypatch):
    home = tmp_path / 'mmengine_home'
    home.mkdir()
    shutil.copy(served[0] / 'teacher.pth', home / 'local_teacher.pth')
    (home / 'open_mmlab.json').write_text(json.dumps({
        'dfss_test/local_teacher': 'local_teacher.pth',  # relative: under MMENGINE_HOME
        'dfss_test/url_teacher': server.url('teacher.pth'),
    }))
    monkeypatch.setenv('MMENGINE_HOME', str(home))
    cfg = osp.join(repo_root, TEACHER)
    assert_weights(build_frozen_segmentor(cfg, 'open-mmlab://dfss_test/local_teacher'),
                   served[1])
    assert not server.gets
    assert_weights(build_frozen_segmentor(cfg, 'open-mmlab://dfss_test/url_teacher'), served[1])
    assert server.gets == {'/teacher.pth': 1}
    with pytest.raises(KeyError, match='open-mmlab://dfss_test/unknown'):
        build_frozen_segmentor(cfg, 'open-mmlab://dfss_test/unknown')


def test_missing_local_checkpoint_names_the_file(repo_root, tmp_path):
    path = str(tmp_path / 'nowhere.pth')
    with pytest.raises(FileNotFoundError, match=re.escape(path)):
        build_frozen_segmentor(osp.join(repo_root, TEACHER), path)


def test_random_teacher_needs_the_opt_in(repo_root):
    cfg = osp.join(repo_root, TEACHER)
    with pytest.raises(ValueError, match='teacher_checkpoint is None.*allow_random_teacher'):
        build_frozen_segmentor(cfg)
    with pytest.raises(ValueError, match='PoolScorer: teacher_checkpoint is None'):
        PoolScorer(cfg, None)
    PoolScorer(cfg, None, strategy='random')  # 'random' never runs the teacher
    model = DataFreeDistiller(teacher=cfg, student=osp.join(repo_root, STUDENT))
    with pytest.raises(ValueError, match=r'DataFreeDistiller: model\.teacher_checkpoint is None'):
        model.train()  # when training starts; testing a checkpoint needs no teacher
    model = build_frozen_segmentor(cfg, allow_random_teacher=True)
    assert not any(p.requires_grad for p in model.parameters())
    DataFreeDistiller(teacher=cfg, student=osp.join(repo_root, STUDENT),
                      allow_random_teacher=True).train()


LOAD_SCRIPT = '''
import hashlib
import sys

import torch.distributed as dist

import mmseg_dfss  # noqa: F401
from mmseg_dfss.core import checkpoint_state_dict

dist.init_process_group('gloo')
state = checkpoint_state_dict(sys.argv[1], 'teacher checkpoint')
h = hashlib.sha256()
for k in sorted(state):
    h.update(k.encode() + state[k].numpy().tobytes())
print(f'rank {dist.get_rank()} loaded {len(state)} tensors sha256 {h.hexdigest()}', flush=True)
dist.destroy_process_group()
'''


@pytest.mark.slow  # ~15-40 s: two fresh processes
def test_two_ranks_download_the_url_once(served, server, tmp_path):
    """torchrun, 2 processes (gloo): rank 0 downloads, rank 1 reads the hub cache."""
    import subprocess
    import sys

    from checkpoint_server import refused_url
    script = tmp_path / 'load.py'
    script.write_text(LOAD_SCRIPT)
    port = refused_url().split(':')[2].split('/')[0]  # a free port for the rendezvous
    env = dict(os.environ, OMP_NUM_THREADS='1', TORCH_HOME=str(tmp_path / 'torch_home'))
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
         '--master_addr', '127.0.0.1', '--master_port', port, str(script),
         server.url('teacher.pth')], env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # the two ranks' prints may interleave on one line: the digest is exactly 64 hex digits
    lines = sorted(re.findall(r'rank (\d) loaded (\d+) tensors sha256 ([0-9a-f]{64})', out))
    assert [r for r, _, _ in lines] == ['0', '1'], out[-3000:]
    assert lines[0][1:] == lines[1][1:] and int(lines[0][1]) == len(served[1])
    assert server.gets == {'/teacher.pth': 1}
