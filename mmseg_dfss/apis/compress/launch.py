"""The heavy parts of ``tools/compress.py`` in several processes: the pool stage's ADS
scoring and the train (DFSS) stage. ``--gpus N`` runs them under torchrun, ``--launcher
slurm`` under srun.

The launched job is the project's own tool on the written config (``tools/ads_score.py``,
``tools/train.py``), exactly what a person would launch by hand: every rank scores a
shard of every pool into the ADS cache, then trains with DDP (gloo on a machine without
CUDA, see :mod:`mmseg_dfss.engine.cpu_ddp`). The other stages stay in this process and
read what the job left under the work dir (the score cache, the checkpoints), so nothing
is scored twice. The job's output is streamed to the terminal and appended to a log
beside the stage's outputs; a job that fails ends the command with one line naming the
stage and that log.
"""
import os
import os.path as osp
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from .errors import CompressError

LAUNCHERS = ('none', 'pytorch', 'slurm')
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
LAUNCH_LOG = 'launch.log'
# tools/slurm_train.sh's defaults (it reads GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS)
DEFAULT_CPUS_PER_TASK = 5
MAX_GPUS_PER_NODE = 8


class LaunchError(CompressError):
    """A launched job exited non-zero: the command ends with this one line, exit 1."""
    exit_code = 1


def add_launch_arguments(parser):
    """``--gpus``, ``--launcher``, ``--partition`` and ``--job-name``."""
    parser.add_argument('--gpus', type=int, default=None,
                        help='processes for scoring and training: N > 1 runs them under '
                        'torchrun (gloo on a machine without CUDA); with --launcher slurm, '
                        'the number of srun tasks (default 1)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default=None,
                        help='pytorch: torchrun on this machine (the default when --gpus > '
                        '1); slurm: srun, with GPUS_PER_NODE, CPUS_PER_TASK and SRUN_ARGS '
                        'read from the environment as tools/slurm_train.sh reads them')
    parser.add_argument('--partition', help='--launcher slurm: the Slurm partition (srun -p; '
                        "default: the cluster's)")
    parser.add_argument('--job-name', default='compress',
                        help='--launcher slurm: the job name (the stage is appended)')


@dataclass(frozen=True)
class Launch:
    """How the pool scoring and the train stage run: in this process, or as jobs."""
    launcher: str = 'none'
    processes: int = 1
    partition: str = None
    job_name: str = 'compress'

    @property
    def distributed(self):
        return self.launcher != 'none'

    def key_parts(self):
        """What a launched training adds to the train stage's inputs: the number of
        processes (each takes ``batch_size`` images, so it changes the run)."""
        return [dict(processes=self.processes)] if self.distributed else []


def launch_settings(args):
    """The :class:`Launch` of parsed arguments; a :class:`CompressError` when they
    cannot run here (checked before any expensive work)."""
    gpus, launcher = args.gpus, args.launcher
    if gpus is not None and gpus < 1:
        raise CompressError(f'--gpus must be >= 1, got {gpus}')
    if launcher is None:
        launcher = 'pytorch' if gpus and gpus > 1 else 'none'
    gpus = gpus or 1
    if launcher == 'none' and gpus > 1:
        raise CompressError(f'--gpus {gpus} needs a launcher: drop --launcher none '
                            '(torchrun) or give --launcher slurm')
    if launcher == 'pytorch':
        import torch
        if torch.cuda.is_available() and gpus > torch.cuda.device_count():
            raise CompressError(f'--gpus {gpus}: this machine has '
                                f'{torch.cuda.device_count()} CUDA device(s)')
    if launcher == 'slurm':
        for name in ('srun', 'scontrol'):
            if shutil.which(name) is None:
                raise CompressError(f'--launcher slurm: {name!r} is not on PATH (run the '
                                    'command where Slurm is installed, e.g. a login node)')
        for name in ('GPUS_PER_NODE', 'CPUS_PER_TASK'):
            value = os.environ.get(name)
            if value is not None and not (value.isdigit() and int(value) > 0):
                raise CompressError(f'--launcher slurm: {name}={value!r} is not a positive '
                                    'integer')
    elif args.partition:
        raise CompressError('--partition is an option of --launcher slurm')
    if launcher != 'none' and not osp.isdir(osp.join(REPO_ROOT, 'tools')):
        raise CompressError(f'--launcher {launcher}: the tools it launches are not found '
                            f'under {REPO_ROOT} (run from a checkout of mmseg-dfss)')
    return Launch(launcher=launcher, processes=gpus, partition=args.partition,
                  job_name=args.job_name)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def job_command(launch, stage, tool, args):
    """``(environment changes, argv)`` of ``tools/<tool> ARGS`` as a job of ``launch``:
    torchrun on this machine (``PORT`` from the environment, else a free one), or srun
    with the options of MMSeg's ``tools/slurm_train.sh``."""
    script = osp.join(REPO_ROOT, 'tools', tool)
    rest = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep)
            if p and osp.abspath(p) != REPO_ROOT]
    env = dict(PYTHONPATH=os.pathsep.join([REPO_ROOT, *rest]))  # this checkout first
    if launch.launcher == 'pytorch':
        port = os.environ.get('PORT') or str(_free_port())
        return env, [sys.executable, '-m', 'torch.distributed.run', '--nnodes=1',
                     f'--nproc_per_node={launch.processes}', '--master_addr=127.0.0.1',
                     f'--master_port={port}', script, *args, '--launcher', 'pytorch']
    per_node = int(os.environ.get('GPUS_PER_NODE') or min(launch.processes, MAX_GPUS_PER_NODE))
    cpus = int(os.environ.get('CPUS_PER_TASK') or DEFAULT_CPUS_PER_TASK)
    srun = ['srun'] + (['-p', launch.partition] if launch.partition else []) + [
        f'--job-name={launch.job_name}-{stage}', f'--gres=gpu:{per_node}',
        f'--ntasks={launch.processes}', f'--ntasks-per-node={per_node}',
        f'--cpus-per-task={cpus}', '--kill-on-bad-exit=1',
        *shlex.split(os.environ.get('SRUN_ARGS', ''))]
    return env, [*srun, sys.executable, '-u', script, *args, '--launcher=slurm']


def _say(text):
    print(f'[compress] {text}', flush=True)


def _die_with_parent():
    """In the job's process (Linux): SIGTERM when the command dies, even by SIGKILL, so
    no orphaned job keeps writing into the work dir that a rerun resumes from
    (torchrun passes the signal on to its workers; srun cancels its tasks)."""
    import ctypes
    import signal
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


ALL_POOLS_CSV = 'ads_scores_all_pools.csv'  # the launched pool scoring's table


def run_job(stage, env, argv, log_path):
    """Runs ``argv`` with ``env`` added, its output streamed to this terminal and
    appended to ``log_path``; a non-zero exit raises :class:`LaunchError`."""
    shown = ' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items()) + ' ' + shlex.join(argv)
    _say(f'{stage}: launching {shown}')
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    out = getattr(sys.stdout, 'buffer', None)
    with open(log_path, 'ab') as log:
        log.write(f'# {time.strftime("%Y-%m-%d %H:%M:%S")} {shown}\n'.encode())
        log.flush()
        proc = subprocess.Popen(argv, env=dict(os.environ, **env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent if sys.platform.startswith(
                                    'linux') else None)
        try:
            while True:  # bytes as they come: progress bars redraw with '\r'
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                if out is not None:
                    out.write(chunk)
                    out.flush()
                else:
                    sys.stdout.write(chunk.decode('utf-8', 'replace'))
                    sys.stdout.flush()
            rc = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: the job must not outlive the command
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stdout.close()
    if rc != 0:
        what = 'torchrun' if argv[1:3] == ['-m', 'torch.distributed.run'] else argv[0]
        raise LaunchError(f'the {stage} stage failed ({what} exited with {rc}); its output '
                          f'is in {log_path}')


def prescore(launch, config_path, out_dir):
    """Under a launch, the pool stage's scoring as a job (``tools/ads_score.py`` on the
    config with every ``--pool``: each pool source by source, every rank a shard, into
    the ADS cache), so the comparison that follows in this process scores nothing.
    Without a launch the comparison scores in this process."""
    if launch.distributed:
        env, argv = job_command(launch, 'pool', 'ads_score.py',
                                [config_path, '--out', osp.join(out_dir, ALL_POOLS_CSV)])
        run_job('pool', env, argv, osp.join(out_dir, LAUNCH_LOG))


def train(launch, cfg, config_path, work_dir):
    """The train stage: in this process, or ``tools/train.py --resume`` as a job (DDP),
    whose best checkpoint is then read here."""
    from .train_stage import run_train, train_result
    if not launch.distributed:
        return run_train(cfg, work_dir)
    env, argv = job_command(launch, 'train', 'train.py',
                            [config_path, '--work-dir', work_dir, '--resume'])
    run_job('train', env, argv, osp.join(work_dir, LAUNCH_LOG))
    return dict(train_result(cfg, work_dir), processes=launch.processes)
