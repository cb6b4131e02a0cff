"""The teacher of a DFSS run, through tools/train.py and tools/test.py:

- teacher and student reached the MMSeg way: ``dict(cfg_path=...)`` specs whose keys
  ``--cfg-options`` sets (``model.student.decode_head.channels=8``,
  ``model.teacher.<key>``), the teacher's checkpoint served over HTTP from 127.0.0.1
  (downloaded once for ADS and distiller);
- checkpoints without the teacher: tools/test.py runs when the teacher's URL is gone;
  ``--resume`` with other weights at ``teacher_checkpoint`` is refused, naming the file;
- one teacher per run: ADS scoring with another teacher stops the run at its first
  iteration, naming both.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

import torch
from checkpoint_server import CheckpointServer
from log_utils import read_test_metrics
from mmengine.config import Config

from mmseg_dfss.core.safe_load import download_cache_path
from mmseg_dfss.core.teacher import build_segmentor

DFSS = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'
TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
ADS = 'configs/synthetic/ads_r18-tiny_synthetic-pool.py'


def synthetic_options(root, work, teacher_ckpt, max_iters=2):
    """--cfg-options: the synthetic fixture's data, eps 16, batch 2, ``max_iters``."""
    return [
        f'model.teacher_checkpoint={teacher_ckpt}',
        f'train_dataloader.dataset.teacher_checkpoint={teacher_ckpt}',
        f'train_dataloader.dataset.dataset.data_root={root}/pool',
        'train_dataloader.dataset.num_samples=16',
        f'train_dataloader.dataset.cache_dir={work}/ads_cache',
        'train_dataloader.batch_size=2',
        f'val_dataloader.dataset.data_root={root}/scenes',
        f'test_dataloader.dataset.data_root={root}/scenes',
        f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
        f'param_scheduler.0.end={max_iters}', f'default_hooks.checkpoint.interval={max_iters}',
        'default_hooks.logger.interval=1', 'default_hooks.visualization.draw=False',
    ]


def save_teacher(repo_root, path, seed=0, **overrides):
    """A random-weight checkpoint of the synthetic teacher with ``overrides``."""
    torch.manual_seed(seed)
    model = build_segmentor(dict(cfg_path=osp.join(repo_root, TEACHER), **overrides))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


# a test-only hook for tools/test.py: the model's state when testing starts (after the
# checkpoint is loaded) and the number of test batches, written to the work dir
LOADED_PROBE = """import json, os.path as osp
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class LoadedStateProbe(Hook):

    def before_test(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        torch.save(model.state_dict(), osp.join(runner.work_dir, 'loaded_state.pth'))
        self.batches = 0

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.batches += 1

    def after_test(self, runner):
        with open(osp.join(runner.work_dir, 'test_batches.json'), 'w') as f:
            json.dump(self.batches, f)
"""


def run_failing(repo_root, *args):
    env = dict(os.environ, PYTHONPATH=repo_root, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *args], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stdout[-3000:]
    return proc.stdout + proc.stderr


def test_cfg_options_reach_inside_teacher_and_student_with_an_http_teacher(
        repo_root, synthetic_root, tmp_path, tool):
    served = tmp_path / 'served'
    served.mkdir()
    save_teacher(repo_root, str(served / 'teacher_c16.pth'), decode_head=dict(channels=16))
    work = str(tmp_path / 'work')
    env = dict(TORCH_HOME=str(tmp_path / 'torch_home'))
    with CheckpointServer(served) as server:
        url = server.url('teacher_c16.pth')
        tool('tools/train.py', DFSS, '--work-dir', work, '--cfg-options',
             *synthetic_options(synthetic_root, work, url),
             'model.student.decode_head.channels=8',
             'model.teacher.decode_head.channels=16', env=env)  # reaches the ADS wrapper too
        assert server.gets == {'/teacher_c16.pth': 1}  # ADS and distiller: one download
    state = torch.load(osp.join(work, 'iter_2.pth'), weights_only=False)['state_dict']
    assert state['student.decode_head.bottleneck.conv.weight'].shape[0] == 8
    exported = torch.load(osp.join(work, 'student', 'student.pth'))['state_dict']
    assert exported['decode_head.bottleneck.conv.weight'].shape[0] == 8
    exported_cfg = Config.fromfile(osp.join(work, 'student', 'student_config.py'))
    assert exported_cfg.model.decode_head.channels == 8
    hub = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    assert os.listdir(hub) == [osp.basename(download_cache_path(url, str(hub)))]
    # the checkpoint carries the teacher's sha256, not its weights
    assert not [k for k in state if k.startswith('teacher.')]
    assert state['teacher_weights_digest'].shape == (32, )

    # testing needs no teacher: its URL is gone now (the server is closed), and there
    # is no hub cache on this "other machine"
    test_dir = str(tmp_path / 'test')
    probe_dir = tmp_path / 'probe'
    probe_dir.mkdir()
    (probe_dir / 'loaded_probe.py').write_text(LOADED_PROBE)
    test_cfg = str(probe_dir / 'dfss_probe.py')
    with open(test_cfg, 'w') as f:
        f.write(f"_base_ = [{osp.join(repo_root, DFSS)!r}]\n"
                "custom_imports = dict(imports=['mmseg_dfss', 'loaded_probe'])\n"
                "custom_hooks = [dict(type='LoadedStateProbe')]\n")
    tool('tools/test.py', test_cfg, osp.join(work, 'iter_2.pth'), '--work-dir', test_dir,
         '--cfg-options', *synthetic_options(synthetic_root, work, url),
         'model.student.decode_head.channels=8',
         'model.teacher.decode_head.channels=16',
         env=dict(TORCH_HOME=str(tmp_path / 'other_machine'),
                  PYTHONPATH=f'{repo_root}{os.pathsep}{probe_dir}'))
    # the model tested holds every weight and buffer of the checkpoint (the student's
    # and the teacher's digest), no key more or less: absent teacher weights are expected
    loaded = torch.load(osp.join(test_dir, 'loaded_state.pth'))
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k
    with open(osp.join(test_dir, 'test_batches.json')) as f:
        assert json.load(f) == 8  # the 8 test scenes
    metrics = read_test_metrics(test_dir)
    assert 0 <= metrics['mIoU'] <= 100
    assert not osp.exists(tmp_path / 'other_machine')

    # tools/export_student.py reads a distiller checkpoint from a URL as well
    with CheckpointServer(work) as ckpt_server:
        tool('tools/export_student.py', ckpt_server.url('iter_2.pth'),
             str(tmp_path / 'exported'), env=dict(TORCH_HOME=str(tmp_path / 'torch_home2')))
    again = torch.load(str(tmp_path / 'exported' / 'student.pth'))['state_dict']
    assert set(again) == set(exported)
    assert all(torch.equal(again[k], v) for k, v in exported.items())


@pytest.mark.slow  # the loader itself: tests/core/test_teacher_checkpoint.py
def test_ads_score_reads_the_teacher_from_a_url(repo_root, synthetic_root, tmp_path, tool):
    served = tmp_path / 'served'
    served.mkdir()
    save_teacher(repo_root, str(served / 'teacher.pth'))
    work = str(tmp_path / 'work')
    opts = ['--cfg-options', f'train_dataloader.dataset.dataset.data_root={synthetic_root}/pool',
            'train_dataloader.dataset.num_samples=16',
            f'train_dataloader.dataset.cache_dir={work}/ads_cache']
    csv_path = str(tmp_path / 'scores.csv')
    with CheckpointServer(served) as server:
        tool('tools/ads_score.py', ADS, '--teacher-checkpoint', server.url('teacher.pth'),
             '--out', csv_path, *opts, env=dict(TORCH_HOME=str(tmp_path / 'torch_home')))
        assert server.gets == {'/teacher.pth': 1}
    with open(csv_path) as f:
        rows = f.read().splitlines()[1:]
    assert len(rows) == 64 and sum(r.endswith(',1') for r in rows) == 16
    # no checkpoint: refused unless --allow-random-teacher
    out = run_failing(repo_root, 'tools/ads_score.py', ADS, '--out', csv_path, *opts,
                      'train_dataloader.dataset.teacher_checkpoint=None')
    assert 'ADSDataset: teacher_checkpoint is None' in out, out[-3000:]


@pytest.mark.slow  # the same check at model level: tests/models/test_teacher_identity.py
def test_ads_with_another_teacher_stops_the_run_naming_both(repo_root, synthetic_root,
                                                            tmp_path):
    ours = save_teacher(repo_root, str(tmp_path / 'teacher.pth'))
    other = save_teacher(repo_root, str(tmp_path / 'OTHER.pth'), seed=1)
    work = str(tmp_path / 'work')
    out = run_failing(repo_root, 'tools/train.py', DFSS, '--work-dir', work, '--cfg-options',
                      *synthetic_options(synthetic_root, work, ours),
                      f'train_dataloader.dataset.teacher_checkpoint={other}')
    assert 'selected by ADS with a different teacher' in out, out[-3000:]
    assert f'(checkpoint {other!r})' in out and f'(checkpoint {ours!r})' in out
    assert 'Iter(train) [1/2]' not in out  # stopped in the first iteration, before a step
    assert not [f for f in os.listdir(work) if f.endswith('.pth')]


@pytest.mark.slow
def test_resume_refuses_other_teacher_weights_naming_the_file(repo_root, synthetic_root,
                                                              tmp_path, tool):
    teacher = str(tmp_path / 'teacher.pth')
    save_teacher(repo_root, teacher)
    work = str(tmp_path / 'work')
    # 'random' selection: the same images whatever the teacher (with 'ads', other teacher
    # weights also change the selection, which ADSSelectionHook reports first)
    opts = lambda iters: [*synthetic_options(synthetic_root, work, teacher, iters),  # noqa
                          'train_dataloader.dataset.strategy=random']
    tool('tools/train.py', DFSS, '--work-dir', work, '--cfg-options', *opts(2))
    shutil.move(teacher, teacher + '.orig')
    save_teacher(repo_root, teacher, seed=5)  # other weights, same file name
    out = run_failing(repo_root, 'tools/train.py', DFSS, '--work-dir', work, '--resume',
                      '--cfg-options', *opts(4))
    assert f'teacher_checkpoint {teacher!r} does not hold the teacher weights this run ' \
        'started with' in out, out[-3000:]
    assert 'Iter(train) [3/4]' not in out
    shutil.move(teacher + '.orig', teacher)  # the right file back: the run goes on
    proc = tool('tools/train.py', DFSS, '--work-dir', work, '--resume', '--cfg-options',
                *opts(4))
    out = proc.stdout + proc.stderr
    assert 'Iter(train) [4/4]' in out and 'Iter(train) [1/4]' not in out


@pytest.mark.slow
def test_train_without_teacher_checkpoint_needs_allow_random_teacher(repo_root, synthetic_root,
                                                                      tmp_path, tool):
    work = str(tmp_path / 'work')
    opts = ['--cfg-options', *synthetic_options(synthetic_root, work, 'None')]
    out = run_failing(repo_root, 'tools/train.py', DFSS, '--work-dir', work, *opts)
    assert 'ADSDataset: teacher_checkpoint is None' in out, out[-3000:]
    proc = tool('tools/train.py', DFSS, '--work-dir', work, '--allow-random-teacher', *opts)
    out = proc.stdout + proc.stderr
    assert 'Iter(train) [2/2]' in out and 'weights are randomly initialised' in out
