"""Runs MMSeg's own command-line tools (shipped in the installed package) in-process."""
import contextlib
import os.path as osp
import runpy
import sys

# CPU-only torch under --launcher pytorch: DDP of a CPU module takes no device ids, and
# SyncBN is reverted to BN (mmseg_dfss.engine.CPUDistributedDataParallel)
CPU_DDP_OPTIONS = ('model_wrapper_cfg.type=mmseg.CPUDistributedDataParallel',
                   'model_wrapper_cfg.device_ids=None', 'env_cfg.dist_cfg.backend=gloo')


def find_mmseg_tool(name):
    """Path of MMSeg's ``tools/<name>``: in the installed package's ``.mim`` folder,
    or in the source tree of an editable MMSeg install."""
    import mmseg
    pkg = osp.dirname(mmseg.__file__)
    for candidate in (osp.join(pkg, '.mim', 'tools', name),
                      osp.join(osp.dirname(pkg), 'tools', name)):
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f'MMSeg tool {name!r} not found under {pkg}/.mim/tools or the MMSeg source tree; '
        'install mmsegmentation from PyPI (its wheel ships the tools) or from source')


def config_argument(argv):
    """The config file of an MMSeg tool's command line: its first ``*.py`` argument
    before ``--cfg-options``."""
    for arg in argv:
        if arg == '--cfg-options':
            return None
        if arg.endswith('.py') and not arg.startswith('-'):
            return arg
    return None


def check_config_argument(argv):
    """Exits with one line (naming the base, the installed MMSeg and what to do) when
    the config of ``argv`` inherits a ``pkg::`` base the installed package does not
    ship, instead of MMEngine's traceback deep inside the tool."""
    from ..core.zoo import ZooConfigError, check_config_bases
    config = config_argument(argv)
    if config is None:
        return
    try:
        check_config_bases(config)
    except ZooConfigError as e:
        raise SystemExit(str(e)) from None


def _launcher(argv):
    for i, arg in enumerate(argv):
        if arg == '--launcher' and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith('--launcher='):
            return arg.split('=', 1)[1]
    return 'none'


def with_cfg_options(argv, options):
    """``argv`` with ``options`` added to ``--cfg-options``, before the user's own
    (which therefore win on a shared key)."""
    argv = list(argv)
    if '--cfg-options' in argv:
        i = argv.index('--cfg-options') + 1
        return argv[:i] + list(options) + argv[i:]
    return argv + ['--cfg-options', *options]


def init_cpu_dist(launcher):
    """The gloo process group of a ``--launcher pytorch|slurm`` run on a torch without
    CUDA. ``pytorch``: torchrun's env://. ``slurm``: MMEngine's own slurm launcher
    (rank, world size, MASTER_ADDR from ``SLURM_*`` and ``scontrol``), minus its
    ``torch.cuda.set_device`` call, which a CPU-only torch cannot make."""
    import torch
    import torch.distributed as dist
    if launcher == 'pytorch':
        dist.init_process_group(backend='gloo')
        return
    from unittest import mock

    from mmengine.dist import init_dist
    with mock.patch.object(torch.cuda, 'set_device', lambda device: None):
        init_dist(launcher, backend='gloo')


@contextlib.contextmanager
def runner_from_registry():
    """Within it, ``Runner.from_cfg`` of a config with ``runner_type`` builds through
    MMSeg's ``RUNNERS`` registry, as MMSeg's tools/train.py does (its tools/test.py
    calls ``Runner.from_cfg``): a DFSS config's ``DFSSRunner`` gives its datasets the
    distiller's teacher under test.py too."""
    from mmengine.runner import Runner
    from mmseg.registry import RUNNERS
    original = Runner.__dict__['from_cfg']

    def from_cfg(cls, cfg):
        if cls is Runner and cfg.get('runner_type'):
            return RUNNERS.build(cfg)
        return original.__func__(cls, cfg)

    Runner.from_cfg = classmethod(from_cfg)
    try:
        yield
    finally:
        Runner.from_cfg = original


def run_mmseg_tool(name, argv=None):
    """Executes MMSeg's ``tools/<name>`` as ``__main__`` with ``argv`` (default:
    this process's arguments), so every flag of MMSeg's tool works unchanged.

    With ``--launcher pytorch`` or ``slurm`` on a torch without CUDA (multi-process
    CPU runs, gloo), MMEngine's launcher would call ``torch.cuda.set_device`` and
    fail: the gloo process group is created here instead (:func:`init_cpu_dist`;
    MMEngine then uses it) and DDP is told to wrap a CPU module
    (:data:`CPU_DDP_OPTIONS`), with SyncBN reverted to BN. A config inheriting an
    ``mmseg::`` base that the installed MMSeg lacks stops first, in one line
    (:func:`check_config_argument`).
    """
    import torch
    import torch.distributed as dist
    path = find_mmseg_tool(name)
    argv = list(sys.argv[1:] if argv is None else argv)
    check_config_argument(argv)
    launcher = _launcher(argv)
    cpu_dist = launcher in ('pytorch', 'slurm') and not torch.cuda.is_available()
    if cpu_dist:
        init_cpu_dist(launcher)
        argv = with_cfg_options(argv, CPU_DDP_OPTIONS)
    sys.argv = [path] + argv
    try:
        runpy.run_path(path, run_name='__main__')
    except BaseException:
        if cpu_dist and dist.is_initialized():
            dist.destroy_process_group()
        raise
    if cpu_dist and dist.is_initialized():
        # a rank that tears gloo down while another still runs its last hooks (rank 0
        # exports the student) was seen to abort ("terminate called without an active
        # exception"); the launcher kills the waiting ranks if one fails instead
        dist.barrier()
        dist.destroy_process_group()
