import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session', autouse=True)
def mmseg_scope():
    """Components resolve in the mmseg scope, as under ``default_scope='mmseg'``."""
    from mmseg.utils import register_all_modules

    import mmseg_dfss  # noqa: F401
    register_all_modules(init_default_scope=True)


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


def run_tool(script, *args, timeout=600, env=None):
    """Runs ``tools/<script>`` (or any repo-relative script) in a subprocess with
    this interpreter; returns the CompletedProcess and fails the test with the
    tool's output when it exits non-zero."""
    full_env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    full_env.update(env or {})
    path = script if osp.isabs(script) else osp.join(REPO, script)
    proc = subprocess.run([sys.executable, path, *map(str, args)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f'{script} {" ".join(map(str, args))} exited {proc.returncode}\n'
                    f'--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}')
    return proc


@pytest.fixture(scope='session')
def tool():
    return run_tool
