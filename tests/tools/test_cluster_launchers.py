"""Launching beyond one machine. tools/dist_train.sh and dist_test.sh hand NNODES,
NODE_RANK, MASTER_ADDR and PORT to torchrun (a stand-in `python` records the command;
a real 2-node run on this machine is
tests/reliability/test_multiprocess.py::test_resume_on_two_nodes_continues_the_run).
tools/slurm_train.sh and slurm_test.sh build MMSeg's srun command from PARTITION,
JOB_NAME, CONFIG, WORK_DIR/CHECKPOINT and GPUS/GPUS_PER_NODE/CPUS_PER_TASK/SRUN_ARGS;
under a fake `srun` that runs the command as one Slurm task (and a fake `scontrol`),
they train and test through MMEngine's slurm launcher (two tool runs: marked slow)."""
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
from log_utils import read_scalars, read_test_metrics, train_steps
from reliability_utils import free_port, tiny_options

# records its arguments and a few environment variables as JSON, then exits 0
RECORDER = textwrap.dedent('''\
    #!{python}
    import json, os, sys
    with open({out!r}, 'a') as f:
        f.write(json.dumps(dict(argv=sys.argv[1:], env={{k: os.environ.get(k) for k in
                ('PYTHONPATH', 'MASTER_ADDR')}})) + '\\n')
    ''')


def fake_bin(tmp_path, **scripts):
    """A folder with executable stand-ins, to put first on PATH."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def run_script(repo_root, script, args, path_first, env=None):
    full = {k: v for k, v in os.environ.items() if k not in (
        'NNODES', 'NODE_RANK', 'MASTER_ADDR', 'PORT', 'GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK',
        'SRUN_ARGS', 'PYTHONPATH')}
    full['PATH'] = path_first + os.pathsep + full.get('PATH', '')
    full.update(env or {})
    return subprocess.run(['bash', osp.join(repo_root, 'tools', script), *args], cwd=repo_root,
                          env=full, capture_output=True, text=True, timeout=600)


def recorded(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def recorder(tmp_path):
    """(bin folder with `python` and `srun` recorders, the record file)."""
    out = str(tmp_path / 'calls.jsonl')
    text = RECORDER.format(python=sys.executable, out=out)
    return fake_bin(tmp_path, python=text, srun=text), out


def test_dist_train_sh_hands_the_nodes_to_torchrun(repo_root, recorder):
    bin_dir, out = recorder
    proc = run_script(repo_root, 'dist_train.sh', ['cfg.py', '8', '--work-dir', 'w d'], bin_dir,
                      env=dict(NNODES='2', NODE_RANK='1', MASTER_ADDR='10.1.1.1',
                               PORT='29612'))
    assert proc.returncode == 0, proc.stderr
    proc = run_script(repo_root, 'dist_test.sh', ['cfg.py', 'ckpt.pth', '4'], bin_dir)
    assert proc.returncode == 0, proc.stderr
    train, test = recorded(out)
    tools = osp.join(repo_root, 'tools')
    assert train['argv'] == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1', '--master_addr=10.1.1.1',
        '--nproc_per_node=8', '--master_port=29612', f'{tools}/train.py', 'cfg.py',
        '--launcher', 'pytorch', '--work-dir', 'w d']
    assert test['argv'] == [  # one node by default
        '-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0', '--master_addr=127.0.0.1',
        '--nproc_per_node=4', '--master_port=29500', f'{tools}/test.py', 'cfg.py', 'ckpt.pth',
        '--launcher', 'pytorch']
    # the repo first; no empty entry (the current directory) when PYTHONPATH was unset
    assert train['env']['PYTHONPATH'] == f'{tools}/..'


@pytest.mark.parametrize('script, args', [('dist_train.sh', ['cfg.py', '8']),
                                          ('dist_test.sh', ['cfg.py', 'ckpt.pth', '8'])])
def test_several_nodes_need_master_addr(repo_root, recorder, script, args):
    bin_dir, out = recorder
    proc = run_script(repo_root, script, args, bin_dir, env=dict(NNODES='2', NODE_RANK='1'))
    assert proc.returncode == 2
    assert 'NNODES=2: set MASTER_ADDR to the address of node 0' in proc.stderr
    assert not osp.exists(out)  # torchrun never started


def test_slurm_scripts_build_mmseg_srun_command(repo_root, recorder):
    bin_dir, out = recorder
    tools = osp.join(repo_root, 'tools')
    env = dict(GPUS='16', GPUS_PER_NODE='8', CPUS_PER_TASK='4',
               SRUN_ARGS='--time=2:00:00 --qos=high')
    assert run_script(repo_root, 'slurm_train.sh',
                      ['gpu', 'dfss', 'cfg.py', 'work_dirs/x', '--amp'], bin_dir,
                      env).returncode == 0
    assert run_script(repo_root, 'slurm_train.sh', ['gpu', 'dfss', 'cfg.py', '--amp'],
                      bin_dir).returncode == 0
    assert run_script(repo_root, 'slurm_test.sh', ['gpu', 'eval', 'cfg.py', 'c.pth', '--tta'],
                      bin_dir, dict(GPUS='2')).returncode == 0
    two_nodes, defaults, test = recorded(out)
    assert two_nodes['argv'] == [
        '-p', 'gpu', '--job-name=dfss', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
        '--cpus-per-task=4', '--kill-on-bad-exit=1', '--time=2:00:00', '--qos=high',
        'python', '-u', f'{tools}/train.py', 'cfg.py', '--launcher=slurm',
        '--work-dir', 'work_dirs/x', '--amp']
    assert defaults['argv'] == [  # 8 GPUs on one node; no WORK_DIR: the config's
        '-p', 'gpu', '--job-name=dfss', '--gres=gpu:8', '--ntasks=8', '--ntasks-per-node=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1',
        'python', '-u', f'{tools}/train.py', 'cfg.py', '--launcher=slurm', '--amp']
    assert test['argv'] == [
        '-p', 'gpu', '--job-name=eval', '--gres=gpu:2', '--ntasks=2', '--ntasks-per-node=2',
        '--cpus-per-task=5', '--kill-on-bad-exit=1',
        'python', '-u', f'{tools}/test.py', 'cfg.py', 'c.pth', '--launcher=slurm', '--tta']
    assert all(r['env']['PYTHONPATH'] == f'{tools}/..' for r in (two_nodes, defaults, test))
    proc = run_script(repo_root, 'slurm_test.sh', ['gpu', 'eval', 'cfg.py'], bin_dir)
    assert proc.returncode == 2 and 'usage:' in proc.stderr


# srun as one task on this machine: checks the options slurm_*.sh pass, sets the
# variables Slurm gives a task, and runs the command
FAKE_SRUN = textwrap.dedent('''\
    #!{python}
    import os, sys
    args = sys.argv[1:]
    opts = {{}}
    while args and args[0].startswith('-'):
        a = args.pop(0)
        key, val = a.split('=', 1) if '=' in a else (a, args.pop(0))
        opts[key] = val
    want = {{'-p': 'debug', '--job-name': 'dfss', '--gres': 'gpu:1', '--ntasks': '1',
             '--ntasks-per-node': '1', '--cpus-per-task': '5', '--kill-on-bad-exit': '1'}}
    if opts != want or args[:2] != ['python', '-u']:
        sys.exit(f'fake srun: unexpected options {{opts}} / command {{args[:2]}}')
    os.environ.update(SLURM_PROCID='0', SLURM_NTASKS='1', SLURM_LOCALID='0',
                      SLURM_NODELIST='node[7]', SLURM_JOB_NAME=opts['--job-name'])
    os.execvp({python!r}, [{python!r}] + args[1:])
    ''')
# scontrol show hostname NODELIST: the first host name of the job (here: this machine)
FAKE_SCONTROL = textwrap.dedent('''\
    #!/usr/bin/env bash
    [ "$*" = "show hostname node[7]" ] || {{ echo "fake scontrol: $*" >&2; exit 1; }}
    echo called >> {log}
    echo 127.0.0.1
    ''')


@pytest.mark.slow
def test_slurm_train_and_test_run_through_mmengine_slurm_launcher(
        tmp_path, synthetic_root, teacher_ckpt, cpu_dfss_config, repo_root):
    calls = tmp_path / 'scontrol_calls'
    bin_dir = fake_bin(tmp_path, srun=FAKE_SRUN.format(python=sys.executable),
                       scontrol=FAKE_SCONTROL.format(log=calls))
    env = dict(GPUS='1', OMP_NUM_THREADS='1', MASTER_PORT=str(free_port()))
    work = str(tmp_path / 'work')
    proc = run_script(repo_root, 'slurm_train.sh',
                      ['debug', 'dfss', cpu_dfss_config, work, '--cfg-options',
                       *tiny_options(synthetic_root, teacher_ckpt, work, max_iters=1)],
                      bin_dir, env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    steps = train_steps(read_scalars(work)[0], 'loss_wdpd', 'wdpd_alpha')
    assert sorted(steps) == [1]
    proc = run_script(repo_root, 'slurm_test.sh',
                      ['debug', 'dfss', cpu_dfss_config, osp.join(work, 'iter_1.pth'),
                       '--work-dir', str(tmp_path / 'test'), '--cfg-options',
                       f'test_dataloader.dataset.data_root={synthetic_root}/scenes',
                       'model.teacher_checkpoint=' + teacher_ckpt,
                       'train_dataloader.dataset.teacher_checkpoint=' + teacher_ckpt],
                      bin_dir, env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert 0 <= read_test_metrics(str(tmp_path / 'test'))['mIoU'] <= 100
    # MMEngine's slurm launcher asked scontrol for the master node, once per run
    assert calls.read_text().split() == ['called', 'called']
