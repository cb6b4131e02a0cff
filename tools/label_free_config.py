"""Writes the label-free variant of a DFSS config: validation on the frozen teacher's
labels (TeacherLabeledDataset) instead of ground truth, save_best='mIoU'. The mIoU it
logs is agreement with the teacher, not accuracy (docs/label_free.md).

    python tools/label_free_config.py configs/dfss/deeplabv3_r50_to_mbv2_nyuv2.py
        (writes work_dirs/label_free_config/deeplabv3_r50_to_mbv2_nyuv2_label-free.py)
    python tools/label_free_config.py CONFIG --images data/val_images --out my_cfg.py

Default images: the --num pool images ADS ranks just after the training eps (never
trained on, the closest to the original domain the pool offers).
"""
import argparse
import os
import os.path as osp

import mmseg_dfss  # noqa: F401  (mmseg:: bases resolve on the installed MMSeg)
from mmseg_dfss.utils.label_free import (DEFAULT_CACHE_DIR, DEFAULT_NUM_IMAGES,
                                         write_label_free_config)

DEFAULT_OUT_DIR = 'work_dirs/label_free_config'


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='a DFSS config (model.type=DataFreeDistiller)')
    p.add_argument('--out', help='the variant to write (default: '
                   f'{DEFAULT_OUT_DIR}/<config name>_label-free.py)')
    p.add_argument('--images', help='a folder of validation images (default: the ADS '
                   'held-out pool images)')
    p.add_argument('--num', type=int, default=DEFAULT_NUM_IMAGES,
                   help='held-out pool images (ranks eps .. eps + num - 1)')
    p.add_argument('--cache-dir', default=DEFAULT_CACHE_DIR, help='where the labels go')
    return p.parse_args()


def main():
    args = parse_args()
    out = args.out or osp.join(
        DEFAULT_OUT_DIR, osp.splitext(osp.basename(args.config))[0] + '_label-free.py')
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    write_label_free_config(args.config, out, images=args.images, num_images=args.num,
                            cache_dir=args.cache_dir)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
