"""tools/compress.py in several processes: --gpus N (torchrun) and --launcher slurm
(srun) run the pool scoring and the train stage as jobs of the project's tools, the other stages
in the command's own process. The commands are what dist_train.sh and slurm_train.sh
launch; a failed job ends the command with one line; 2 gloo processes on CPU select
what one process selects (within the scorer's tolerance) and train with DDP."""
import csv
import glob
import json
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from cli_utils import snapshot as _snapshot

from mmseg_dfss.apis.compress import main
from mmseg_dfss.apis.compress.launch import (REPO_ROOT, Launch, LaunchError, job_command,
                                             run_job)
from mmseg_dfss.core.bn_stats import SCORE_RTOL

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'
STAGES = ('select', 'train', 'judge', 'ship', 'report')


def _args(pool, work_dir, teacher_ckpt, *extra):
    return [TEACHER, '--pool', pool, '--work-dir', str(work_dir), '--teacher-checkpoint',
            teacher_ckpt, '--student', STUDENT, '--eps', '16', '--val-images', '4',
            '--iters', '2', '--batch-size', '2', *extra]


def _error_line(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert 'Traceback' not in '\n'.join(err)
    return err[-1]


def test_launch_settings_that_cannot_run_say_one_line(tmp_path, capsys, monkeypatch,
                                                      synthetic_root, teacher_ckpt):
    argv = _args(osp.join(synthetic_root, 'pool'), tmp_path / 'w', teacher_ckpt)
    assert '--gpus must be >= 1' in _error_line(capsys, argv + ['--gpus', '0'])
    line = _error_line(capsys, argv + ['--gpus', '2', '--launcher', 'none'])
    assert '--gpus 2 needs a launcher' in line
    line = _error_line(capsys, argv + ['--gpus', '2', '--partition', 'gpu'])
    assert '--partition is an option of --launcher slurm' in line
    empty = tmp_path / 'bin'
    empty.mkdir()
    monkeypatch.setenv('PATH', str(empty))
    line = _error_line(capsys, argv + ['--launcher', 'slurm'])
    assert "'srun' is not on PATH" in line
    for name in ('srun', 'scontrol'):
        (empty / name).write_text('#!/bin/sh\n')
        (empty / name).chmod(0o755)
    monkeypatch.setenv('GPUS_PER_NODE', 'eight')
    line = _error_line(capsys, argv + ['--launcher', 'slurm'])
    assert "GPUS_PER_NODE='eight' is not a positive integer" in line
    assert not (tmp_path / 'w').exists()  # stopped before anything was written


def test_jobs_are_the_launchers_of_dist_train_and_slurm_train(monkeypatch):
    tools = osp.join(REPO_ROOT, 'tools')
    monkeypatch.setenv('PYTHONPATH', f'{REPO_ROOT}{os.pathsep}/extra')
    monkeypatch.setenv('PORT', '29612')
    env, argv = job_command(Launch('pytorch', 2), 'train', 'train.py',
                            ['c.py', '--work-dir', 'w'])
    assert env == dict(PYTHONPATH=f'{REPO_ROOT}{os.pathsep}/extra')  # this checkout first
    assert argv == [sys.executable, '-m', 'torch.distributed.run', '--nnodes=1',
                    '--nproc_per_node=2', '--master_addr=127.0.0.1', '--master_port=29612',
                    f'{tools}/train.py', 'c.py', '--work-dir', 'w', '--launcher', 'pytorch']
    monkeypatch.setenv('GPUS_PER_NODE', '8')
    monkeypatch.setenv('CPUS_PER_TASK', '4')
    monkeypatch.setenv('SRUN_ARGS', '--time=2:00:00 --qos=high')
    _, argv = job_command(Launch('slurm', 16, 'gpu', 'city'), 'select', 'ads_score.py',
                          ['c.py'])
    assert argv == ['srun', '-p', 'gpu', '--job-name=city-select', '--gres=gpu:8',
                    '--ntasks=16', '--ntasks-per-node=8', '--cpus-per-task=4',
                    '--kill-on-bad-exit=1', '--time=2:00:00', '--qos=high', sys.executable,
                    '-u', f'{tools}/ads_score.py', 'c.py', '--launcher=slurm']
    for name in ('GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS'):
        monkeypatch.delenv(name)
    _, argv = job_command(Launch('slurm', 2), 'train', 'train.py', ['c.py'])
    assert argv[:7] == ['srun', '--job-name=compress-train', '--gres=gpu:2', '--ntasks=2',
                        '--ntasks-per-node=2', '--cpus-per-task=5', '--kill-on-bad-exit=1']


def test_a_job_streams_into_its_log_and_a_failure_names_stage_and_log(tmp_path, capfd):
    log = str(tmp_path / 'train' / 'launch.log')
    script = 'import sys; sys.stdout.write("10%\\r20%\\rdone\\n"); sys.exit(3)'
    with pytest.raises(LaunchError) as e:
        run_job('train', {'X': 'y'}, [sys.executable, '-c', script], log)
    assert str(e.value) == (f'the train stage failed ({sys.executable} exited with 3); '
                            f'its output is in {log}')
    assert e.value.exit_code == 1
    out = capfd.readouterr().out
    assert 'train: launching X=y ' in out and out.endswith('10%\r20%\rdone\n')
    with open(log, 'rb') as f:
        lines = f.read().split(b'\n')
    assert lines[0].endswith(f'X=y {sys.executable} -c'.encode() + b" '" + script.encode()
                             + b"'")
    assert lines[1] == b'10%\r20%\rdone'  # the bars as the job drew them
    run_job('train', {}, [sys.executable, '-c', 'print("again")'], log)  # appended
    with open(log) as f:
        assert f.read().count('# ') == 2


def test_only_a_launched_training_keys_the_train_stage_on_its_processes():
    assert Launch().key_parts() == []  # one-process stamps of earlier runs stay valid
    assert Launch('pytorch', 2).key_parts() != Launch('pytorch', 4).key_parts()
    assert Launch('slurm', 2).key_parts() == Launch('pytorch', 2).key_parts()


# ----------------------------------------------------------------- 2 processes

def _scores(work_dir):
    with open(osp.join(work_dir, 'select', 'ads_scores.csv')) as f:
        return {r['img_path']: float(r['score']) for r in csv.DictReader(f)}


def _report(work_dir):
    with open(osp.join(work_dir, 'report.json')) as f:
        return json.load(f)


def _runtime_env(train):
    """MMEngine's own record of the launch (the 'Runtime environment' it logs)."""
    log = glob.glob(osp.join(train['log_dir'], '*.log'))[0]
    with open(log) as f:
        text = f.read()
    world = int(re.search(r'^\s+GPU number: (\d+)$', text, re.M).group(1))
    launcher = re.search(r'^\s+Distributed launcher: (\w+)$', text, re.M).group(1)
    return world, launcher


def _shards(work_dir):
    """``{rank: [pool image path, ...]}`` of the ADS score cache's part files."""
    out = {}
    for part in glob.glob(osp.join(work_dir, 'ads_cache', 'ads-*', 'part-*.jsonl')):
        rank = int(re.search(r'part-(\d+)', part).group(1))
        with open(part) as f:
            out[rank] = [json.loads(line)['path'] for line in f]
    return out


def _assert_same_selection(one, two, eps):
    """The kept sets agree except for images whose score is within the scorer's
    tolerance of the eps cut (two numeric paths: 1 and 2 processes)."""
    a, b = _scores(one['work_dir']), _scores(two['work_dir'])
    assert a.keys() == b.keys()
    for path in a:
        assert b[path] == pytest.approx(a[path], rel=SCORE_RTOL), path
    ranked = sorted(a.values())
    cut = (ranked[eps - 1] + ranked[eps]) / 2
    unsure = {p for p, s in a.items() if abs(s - cut) <= 2 * SCORE_RTOL * abs(cut)}
    kept_a, kept_b = set(one['kept']), set(two['kept'])
    assert len(kept_a) == len(kept_b) == eps
    assert kept_a - unsure == kept_b - unsure
    assert len(unsure) < len(a)  # the comparison compared something


@pytest.mark.slow
def test_two_processes_select_what_one_selects_and_train_with_ddp(
        tmp_path, synthetic_root, teacher_ckpt, tool, repo_root):
    pool = osp.join(synthetic_root, 'pool')
    one, two = tmp_path / 'one', tmp_path / 'two'
    tool('tools/compress.py', *_args(pool, one, teacher_ckpt))
    out = tool('tools/compress.py', *_args(pool, two, teacher_ckpt, '--gpus', '2')).stdout
    assert out.count('torch.distributed.run') >= 2  # the launched commands are shown
    r1, r2 = _report(one), _report(two)
    _assert_same_selection(dict(r1['select'], work_dir=one), dict(r2['select'], work_dir=two),
                           eps=16)
    shards = _shards(two)  # each rank scored a share; this process scored nothing
    assert sorted(shards) == [0, 1] and shards[0] and shards[1]
    assert sorted(shards[0] + shards[1]) == sorted(_scores(two))
    assert _runtime_env(r2['train']) == (2, 'pytorch')
    assert _runtime_env(r1['train']) == (1, 'none')
    assert r2['train']['processes'] == 2
    assert 0 <= r2['judge']['miou'] <= 100 and osp.isfile(r2['ship']['onnx'])

    before = _snapshot(two)
    out = tool('tools/compress.py', *_args(pool, two, teacher_ckpt, '--gpus', '2')).stdout
    assert _snapshot(two) == before  # nothing launched, nothing written
    assert 'launching' not in out
    for name in STAGES:
        assert f'[compress] {name}: reused' in out

    # a job that fails: one line from this command, naming the stage and the job's log
    env = dict(os.environ, PYTHONPATH=repo_root, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, 'tools/compress.py', *_args(pool, two, teacher_ckpt, '--gpus', '2'),
         '--cfg-options', 'optim_wrapper.optimizer.type=NoSuchOptimizer'],
        cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600)
    assert proc.returncode == 1
    assert '[compress] select: reused' in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    logs = glob.glob(str(two / 'train' / '*' / 'launch.log'))
    failed = [p for p in logs if 'NoSuchOptimizer' in open(p).read()]
    assert last == ('compress: error: the train stage failed (torchrun exited with 1); its '
                    f'output is in {failed[0]}')
    assert 'apis/compress/launch.py' not in proc.stdout  # no traceback of this process


@pytest.mark.slow
def test_a_killed_command_takes_its_job_down_and_the_rerun_resumes_training(
        tmp_path, synthetic_root, teacher_ckpt, repo_root, tool):
    """SIGKILL of the command alone (not its process group) during a 2-process
    training: the job stops too; the same command again resumes from the last
    checkpoint and finishes."""
    from log_utils import read_scalars
    work = tmp_path / 'w'
    argv = _args(osp.join(synthetic_root, 'pool'), work, teacher_ckpt, '--gpus', '2')
    argv[argv.index('--iters') + 1] = '10'  # a checkpoint every 2 iterations
    env = dict(os.environ, PYTHONPATH=repo_root, OMP_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, 'tools/compress.py', *argv], cwd=repo_root,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 600
        while not glob.glob(str(work / 'train' / '*' / 'iter_4.pth')):
            assert proc.poll() is None and time.time() < deadline, 'no checkpoint before exit'
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 120
        while True:  # torchrun and both workers end with the command
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            assert time.time() < deadline, 'the job outlived the command'
            time.sleep(0.2)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not (work / 'report.json').exists()
    assert not glob.glob(str(work / 'train' / '*' / 'iter_10.pth'))  # no orphan trained on
    out = tool('tools/compress.py', *argv).stdout
    assert '[compress] select: reused' in out and '[compress] train: started' in out
    train_dir = _report(work)['train']['work_dir']
    resumed = sorted(r['step'] for r in read_scalars(train_dir)[0])
    assert resumed[0] > 4 and resumed[-1] == 10  # continued after a saved checkpoint
    assert osp.isfile(osp.join(train_dir, 'iter_10.pth'))


FAKE_SRUN = textwrap.dedent('''\
    #!{python}
    """srun on this machine: records its options, starts --ntasks local tasks with the
    variables Slurm gives each task, exits with the worst status."""
    import json, os, subprocess, sys
    args = sys.argv[1:]
    opts = {{}}
    while args and args[0].startswith('-'):
        a = args.pop(0)
        key, val = a.split('=', 1) if '=' in a else (a, args.pop(0))
        opts[key] = val
    with open({log!r}, 'a') as f:
        f.write(json.dumps(opts) + '\\n')
    n = int(opts['--ntasks'])
    tasks = [subprocess.Popen(args, env=dict(
        os.environ, SLURM_PROCID=str(i), SLURM_NTASKS=str(n), SLURM_LOCALID=str(i),
        SLURM_NODELIST='node[7]', SLURM_JOB_NAME=opts['--job-name'])) for i in range(n)]
    sys.exit(max(t.wait() for t in tasks))
    ''')
FAKE_SCONTROL = textwrap.dedent('''\
    #!/usr/bin/env bash
    [ "$*" = "show hostname node[7]" ] || {{ echo "fake scontrol: $*" >&2; exit 1; }}
    echo called >> {log}
    echo 127.0.0.1
    ''')


@pytest.mark.slow
def test_slurm_launcher_runs_pool_scoring_and_train_as_srun_tasks(tmp_path, synthetic_root,
                                                           teacher_ckpt, repo_root):
    from reliability_utils import free_port
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun_log, scontrol_log = tmp_path / 'srun.jsonl', tmp_path / 'scontrol'
    for name, text in (('srun', FAKE_SRUN.format(python=sys.executable, log=str(srun_log))),
                       ('scontrol', FAKE_SCONTROL.format(log=scontrol_log))):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in (
        'MASTER_ADDR', 'GPUS_PER_NODE', 'SRUN_ARGS')}
    env.update(PATH=f'{bin_dir}{os.pathsep}{env["PATH"]}', PYTHONPATH=repo_root,
               OMP_NUM_THREADS='1', MASTER_PORT=str(free_port()), CPUS_PER_TASK='1')
    work = tmp_path / 'w'
    proc = subprocess.run(
        [sys.executable, 'tools/compress.py',
         *_args(osp.join(synthetic_root, 'pool'), work, teacher_ckpt),
         '--launcher', 'slurm', '--gpus', '2', '--partition', 'debug', '--job-name', 'dfss'],
        cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    with open(srun_log) as f:
        calls = [json.loads(line) for line in f]
    assert calls == [{'-p': 'debug', '--job-name': f'dfss-{stage}', '--gres': 'gpu:2',
                      '--ntasks': '2', '--ntasks-per-node': '2', '--cpus-per-task': '1',
                      '--kill-on-bad-exit': '1'} for stage in ('pool', 'train')]
    # MMEngine's slurm launcher asked scontrol for the master, once per task
    assert scontrol_log.read_text().split() == ['called'] * 4
    shards = _shards(work)
    assert sorted(shards) == [0, 1] and shards[0] and shards[1]
    report = _report(work)
    assert _runtime_env(report['train']) == (2, 'slurm')
    assert report['train']['processes'] == 2 and 0 <= report['judge']['miou'] <= 100
