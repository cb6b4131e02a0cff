import atexit
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'
DFSS = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'


@pytest.fixture(scope='session', autouse=True)
def mmseg_scope():
    """Components resolve in the mmseg scope, as under ``default_scope='mmseg'``."""
    from mmseg.utils import register_all_modules

    import mmseg_dfss  # noqa: F401
    register_all_modules(init_default_scope=True)


@pytest.fixture(scope='session', autouse=True)
def torch_threads():
    """Intra-op threads of the test process: ``DFSS_TEST_THREADS`` (default 1, as the
    tools' subprocesses run, ``run_tool``). The tiny models of the tests gain nothing
    from a second thread and lose much while the cores are shared with another
    process; CI's numerics phase runs with 2, another path of float32 sums."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get('DFSS_TEST_THREADS', '1')))
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def mmseg_default_scope(mmseg_scope):
    """Every test runs in the mmseg scope, as a DFSS run does under its Runner: a
    Runner that an earlier test built without ``default_scope`` (MMEngine's default,
    'mmengine') would otherwise send later ``MODELS.build`` calls to MMEngine's root
    registry."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


@pytest.fixture(scope='session')
def repo_root():
    return REPO


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory):
    """A small synthetic layout (24 train / 8 test rooms, 64 pool images, 64 px)."""
    from mmseg_dfss.datasets.synthetic import generate_synthetic
    root = str(tmp_path_factory.mktemp('synthetic'))
    generate_synthetic(root, seed=0, num_train=24, num_test=8, pool_size=64, size=64,
                       progress=False)
    return root


@pytest.fixture(scope='session')
def teacher_ckpt(tmp_path_factory, repo_root):
    """The synthetic teacher (DeepLabV3-R18-tiny) with random weights (seed 0) and
    spread-out BN statistics, saved once per session."""
    import torch
    from model_utils import randomise_bn

    from mmseg_dfss.core import build_frozen_segmentor
    torch.manual_seed(0)
    model = randomise_bn(build_frozen_segmentor(osp.join(repo_root, TEACHER), allow_random_teacher=True))
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def _plain_bn(obj):
    """SyncBN -> BN: DDP refuses SyncBN on CPU ("SyncBatchNorm layers only work with
    GPU modules"); the weights are the same."""
    if isinstance(obj, dict):
        return {k: ('BN' if k == 'type' and v == 'SyncBN' else _plain_bn(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain_bn(v) for v in obj)
    return obj


@pytest.fixture(scope='session')
def cpu_dfss_config(tmp_path_factory, repo_root):
    """The synthetic DFSS config with plain BN in teacher and student (CPU DDP) and
    no dropout in the student (so a resumed run can be compared number for number)."""
    from mmseg_dfss.core import load_model_config
    teacher = _plain_bn(load_model_config(osp.join(repo_root, TEACHER)).to_dict())
    student = _plain_bn(load_model_config(osp.join(repo_root, STUDENT)).to_dict())
    student['decode_head']['dropout_ratio'] = 0.0
    teacher['_delete_'] = student['_delete_'] = True
    path = str(tmp_path_factory.mktemp('cfg') / 'dfss_cpu.py')
    with open(path, 'w') as f:
        f.write(f'_base_ = [{osp.join(repo_root, DFSS)!r}]\n'
                f'model = dict(teacher={teacher!r}, student={student!r})\n'
                f'train_dataloader = dict(dataset=dict(teacher={teacher!r}))\n')
    return path


# what a tool run adds to the environment: this repository first on the path, one
# thread (the tiny models gain nothing from more while the cores are shared)
TOOL_ENV_OVERRIDES = dict(PYTHONPATH=REPO, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
_SERVER_ENV = dict(os.environ, **TOOL_ENV_OVERRIDES)  # before any test changed os.environ
_server = None


def run_python(script, *args, env=None, cwd=REPO, timeout=600):
    """``python <script> ARGS`` (``script`` absolute or repo-relative) in its own
    process, like ``subprocess.run(..., capture_output=True, text=True)``: forked from
    a server that has already imported the plugin (tests/tool_server.py), or a fresh
    interpreter where ``env`` changes what is decided at import time (a test that
    changes such a variable for a tool passes it here). The environment: this
    process's, :data:`TOOL_ENV_OVERRIDES`, then ``env``. Returns the CompletedProcess,
    whatever its exit status."""
    global _server
    from tool_server import ToolServer, needs_fresh_interpreter
    settings = dict(TOOL_ENV_OVERRIDES, **(env or {}))
    full_env = dict(os.environ, **settings)
    path = script if osp.isabs(script) else osp.join(REPO, script)
    argv = [path, *map(str, args)]
    if _server is None:
        _server = ToolServer(_SERVER_ENV)
        atexit.register(_server.close)
    if needs_fresh_interpreter(settings, _server.env):
        return subprocess.run([sys.executable, *argv], cwd=cwd, env=full_env,
                              capture_output=True, text=True, timeout=timeout)
    return _server.run(argv, full_env, cwd, timeout)


def run_tool(script, *args, timeout=600, env=None):
    """Runs ``tools/<script>`` (or any repo-relative script) in its own process
    (:func:`run_python`); returns the CompletedProcess and fails the test with the
    tool's output when it exits non-zero."""
    proc = run_python(script, *args, env=env, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f'{script} {" ".join(map(str, args))} exited {proc.returncode}\n'
                    f'--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}')
    return proc


@pytest.fixture(scope='session')
def tool():
    return run_tool
