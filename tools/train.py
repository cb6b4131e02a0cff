"""MMSeg's tools/train.py with mmseg-dfss imported: same flags (--work-dir, --resume,
--amp, --cfg-options, --launcher, ...), see `python tools/train.py --help`, plus
--allow-random-teacher: a DFSS run whose teacher_checkpoint is None trains with a
random-weight teacher (tests and benchmarks; without the flag that is an error)."""
import sys

import mmseg_dfss  # noqa: F401  (registers the plugin; checkpoints load under torch>=2.6)
from mmseg_dfss.utils import run_mmseg_tool
from mmseg_dfss.utils.mmseg_tools import check_config_argument, with_cfg_options

ALLOW_RANDOM_TEACHER = '--allow-random-teacher'


def random_teacher_options(config):
    """--cfg-options that set allow_random_teacher=True where the config has a teacher:
    the distiller (DFSSRunner gives it to every dataset that takes model.teacher), and
    each ADS or teacher-labelled dataset that names its own teacher."""
    from mmengine.config import Config

    from mmseg_dfss.core.shared_teacher import TEACHER_DATASETS
    cfg = Config.fromfile(config)
    opts = []
    if (cfg.get('model') or {}).get('type') == 'DataFreeDistiller':
        opts.append('model.allow_random_teacher=True')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        key, ds = f'{loader}.dataset', (cfg.get(loader) or {}).get('dataset')
        while isinstance(ds, dict):
            if ds.get('type') in TEACHER_DATASETS and ds.get('teacher') is not None:
                opts.append(f'{key}.allow_random_teacher=True')
            key, ds = f'{key}.dataset', ds.get('dataset')
    return opts


PLUGIN_HELP = f'''
mmseg-dfss option (removed before MMSeg's train.py reads the command line):
  {ALLOW_RANDOM_TEACHER}
                        a DFSS run whose teacher_checkpoint is None trains with a
                        random-weight teacher (tests and benchmarks); without it
                        that is an error'''


if __name__ == '__main__':
    argv = sys.argv[1:]
    if '-h' in argv or '--help' in argv:
        try:
            run_mmseg_tool('train.py', argv)
        finally:
            print(PLUGIN_HELP)
    check_config_argument(argv)  # an mmseg:: base the installed MMSeg lacks: one line
    if ALLOW_RANDOM_TEACHER in argv:
        argv.remove(ALLOW_RANDOM_TEACHER)
        config = next((a for a in argv if a.endswith('.py')), None)
        if config is not None:
            argv = with_cfg_options(argv, random_teacher_options(config))
    run_mmseg_tool('train.py', argv)
