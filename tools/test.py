"""MMSeg's tools/test.py with mmseg-dfss imported: same flags (--work-dir, --resume,
--amp, --cfg-options, --launcher, ...), see `python tools/test.py --help`."""
import mmseg_dfss  # noqa: F401  (registers the plugin; checkpoints load under torch>=2.6)
from mmseg_dfss.utils import run_mmseg_tool

if __name__ == '__main__':
    run_mmseg_tool('test.py')
