"""scripts/offline_gpu.sh ``run`` stops early with a line that says what to do (no
network, no GPU needed), and the CUDA benchmark helpers accept indexed devices."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'scripts', 'offline_gpu.sh')


def run_offline(tmp_path, python):
    env = dict(os.environ, PYTHON=str(python), DFSS_OFFLINE_DIR=str(tmp_path / 'offline'),
               DFSS_OFFLINE_VENV=str(tmp_path / 'venv'), DFSS_DEVICE='cpu')
    return subprocess.run(['bash', SCRIPT, 'run'], capture_output=True, text=True, env=env,
                          timeout=120)


def test_run_without_packed_wheels_says_to_pack(tmp_path):
    proc = run_offline(tmp_path, sys.executable)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f'{tmp_path}/offline/wheels missing' in proc.stderr
    assert "run 'bash scripts/offline_gpu.sh pack' where PyPI is reachable" in proc.stderr
    assert not (tmp_path / 'venv').exists()


def test_run_names_a_python_without_torch_before_building_anything(tmp_path):
    (tmp_path / 'offline' / 'wheels').mkdir(parents=True)
    no_torch = tmp_path / 'python-without-site-packages'
    no_torch.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')  # -S: no torch
    no_torch.chmod(0o755)
    proc = run_offline(tmp_path, no_torch)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"{no_torch} has no torch: set PYTHON to the box's Python that holds its CUDA "
            'torch') in proc.stderr
    assert not (tmp_path / 'venv').exists()


def test_distill_step_counts_indexed_cuda_devices_as_cuda():
    """``--device cuda:1`` must synchronise and read CUDA memory, never fork."""
    spec = importlib.util.spec_from_file_location(
        'distill_step', osp.join(REPO, 'benchmarks', 'distill_step.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.is_cuda('cuda') and bench.is_cuda('cuda:1')
    assert bench.is_cuda(torch.device('cuda', 0))
    assert not bench.is_cuda('cpu')
