"""Documented commands run as written, in a sandbox folder that links the repository's
configs/, tools/ and benchmarks/ and holds tiny data where a command reads data/...: a
command whose text changes in the doc, or that stops working, fails here. What cannot run
here (a GPU, the real NYUv2/COCO/Cityscapes, the network, hours of CPU) is listed in
docs/tested_commands.md."""
import os
import os.path as osp
import re
import shlex
import subprocess
import sys

import pytest
from dataset_layouts import make_nyuv2_toolkit
from doc_commands import REPO, doc_commands
from mmengine.config import Config

C = 'configs/dfss/deeplabv3_r50_to_mbv2_nyuv2.py'


def documented(doc, command):
    """``command`` as ``doc`` writes it (``$C`` substituted); fails if the doc no longer has it."""
    wanted = shlex.split(command)
    for d, _, argv in doc_commands():
        if d == doc and [w.replace('$C', C) for w in argv] == wanted:
            return wanted
    pytest.fail(f'{doc} no longer documents: {command}')


@pytest.fixture
def sandbox(tmp_path):
    for name in ('configs', 'tools', 'benchmarks'):
        os.symlink(osp.join(REPO, name), tmp_path / name)
    return tmp_path


def run(sandbox, argv, timeout=600):
    # ``python`` in a documented command is the interpreter running the tests (CI's PATH
    # need not have the virtualenv first).
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PATH=osp.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    if argv[0] == 'python':
        argv = [sys.executable] + argv[1:]
    proc = subprocess.run(argv, cwd=sandbox, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def test_readme_label_free_config(sandbox):
    run(sandbox, documented('README.md', f'python tools/label_free_config.py {C}'))
    cfg = Config.fromfile(str(sandbox / 'work_dirs' / 'label_free_config' /
                              'deeplabv3_r50_to_mbv2_nyuv2_label-free.py'))
    assert cfg.val_dataloader.dataset.type == 'TeacherLabeledDataset'


def test_label_free_config_with_a_folder(sandbox):
    run(sandbox, documented(
        'docs/label_free.md', 'python tools/label_free_config.py '
        'configs/dfss/deeplabv3_r50_to_mbv2_nyuv2.py --images data/my_val_images '
        '--out work_dirs/my_nyuv2_label-free.py'))
    cfg = Config.fromfile(str(sandbox / 'work_dirs' / 'my_nyuv2_label-free.py'))
    assert cfg.val_dataloader.dataset.dataset.data_prefix.img_path == 'data/my_val_images'


def test_check_dataset_on_an_nyuv2_layout(sandbox):
    make_nyuv2_toolkit(str(sandbox / 'data' / 'nyuv2'))
    out = run(sandbox, documented(
        'docs/datasets.md',
        'python tools/check_dataset.py configs/_base_/datasets/nyuv2.py --data-root data/nyuv2'))
    assert re.findall(r'^samples: (\d+), labels: (\d+)', out, re.M) == [('3', '3'), ('2', '2')]
    assert out.count('\nOK') == 2, out


@pytest.mark.slow
def test_synthetic_data_and_its_entropy_figures(sandbox):
    """datasets.md's pool_entropy lines, output included, after generate_synthetic.py."""
    run(sandbox, documented('docs/datasets.md', 'python tools/generate_synthetic.py'))
    with open(osp.join(REPO, 'docs', 'datasets.md')) as f:
        text = f.read()
    shown = re.findall(r'^\$ (python tools/pool_entropy\.py \S+)\n(.+)$', text, re.M)
    assert len(shown) == 2
    for command, printed in shown:
        out = run(sandbox, documented('docs/datasets.md', command))
        assert printed in out.splitlines(), out
