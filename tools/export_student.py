"""Exports the student of a DataFreeDistiller checkpoint as a plain MMSeg checkpoint and
config (loadable by MMSeg's own tools/test.py and mmseg.apis.init_model without this
plugin).

    python tools/export_student.py work_dirs/dfss/epoch_150.pth work_dirs/dfss/student
    python tools/export_student.py CKPT OUT_DIR --config configs/dfss/...py
"""
import argparse

import mmseg_dfss  # noqa: F401  (registers the plugin; checkpoints load under torch>=2.6)
from mmseg_dfss.models import export_student_from_checkpoint


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('checkpoint', help='a DataFreeDistiller training checkpoint (a path or URL)')
    p.add_argument('out_dir', help='writes student.pth and student_config.py here')
    p.add_argument('--config', default=None,
                   help='the training config (default: the one stored in the checkpoint)')
    args = p.parse_args()
    ckpt, cfg = export_student_from_checkpoint(args.checkpoint, args.out_dir, args.config)
    print(f'checkpoint: {ckpt}\nconfig: {cfg}')


if __name__ == '__main__':
    main()
