"""MMSeg's tools/test.py with mmseg-dfss imported: same flags (--work-dir, --resume,
--amp, --cfg-options, --launcher, ...), see `python tools/test.py --help`. A config's
``runner_type`` (DFSS configs: ``DFSSRunner``) is honoured, as by tools/train.py."""
import mmseg_dfss  # noqa: F401  (registers the plugin; checkpoints load under torch>=2.6)
from mmseg_dfss.utils import run_mmseg_tool
from mmseg_dfss.utils.mmseg_tools import runner_from_registry

if __name__ == '__main__':
    with runner_from_registry():
        run_mmseg_tool('test.py')
