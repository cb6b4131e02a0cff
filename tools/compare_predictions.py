"""Where do student and teacher disagree? For each image: input | teacher | student |
disagreement (MMSeg palettes), worst agreement first; and per-class agreement (IoU of
the student against the teacher) as a bar chart. Agreement, not accuracy: the teacher's
predictions are the reference (the paper's Fig. 4 view, measured).

    python tools/compare_predictions.py CONFIG CHECKPOINT --images SPEC [--out DIR] [--num N]

CONFIG: the DFSS config (its teacher, its student architecture, its evaluation
pipeline and classes). CHECKPOINT: a DataFreeDistiller checkpoint of that run or the
exported student (student.pth). --images: a folder, a list file, or 'held-out' (the
pool images ADS ranks after the training eps). Writes OUT/compare_<k>.png for the
--num worst images, OUT/per_class_agreement.png, OUT/per_image.csv and OUT/summary.json
(OUT: default work_dirs/compare_predictions; a new or empty folder, or one this tool
wrote before: it never writes into another tool's output folder).
"""
import argparse
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

import mmseg_dfss  # noqa: F401  (registers the plugin)
from mmseg_dfss.datasets.teacher_labeled import AGREEMENT_NOTE
from mmseg_dfss.utils.agreement import measure_agreement
from mmseg_dfss.utils.label_free import (DEFAULT_NUM_IMAGES, load_student,
                                         teacher_labeled_dataset)
from mmseg_dfss.utils.output_dir import OutputDirError, claim_output_dir

DEFAULT_OUT = 'work_dirs/compare_predictions'


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='the DFSS config')
    p.add_argument('checkpoint', help='a distiller checkpoint or an exported student.pth')
    p.add_argument('--images', required=True,
                   help="a folder of images, a list file, or 'held-out'")
    p.add_argument('--out', default=DEFAULT_OUT, help=f'output folder (default: {DEFAULT_OUT})')
    p.add_argument('--num', type=int, default=8, help='images drawn (worst agreement first)')
    p.add_argument('--num-images', type=int, default=DEFAULT_NUM_IMAGES,
                   help="images of --images held-out")
    p.add_argument('--teacher-checkpoint', help="default: the config's")
    p.add_argument('--cache-dir', help='teacher label cache (default: OUT/.label_cache)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override settings of CONFIG, as in tools/train.py')
    p.add_argument('--allow-random-teacher', action='store_true', help=argparse.SUPPRESS)
    return p.parse_args()


def main():
    args = parse_args()
    try:
        claim_output_dir(args.out, 'compare_predictions')
    except OutputDirError as e:
        raise SystemExit(str(e))
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    extra = dict(allow_random_teacher=True) if args.allow_random_teacher else {}
    try:
        ds_cfg = teacher_labeled_dataset(cfg, args.images, args.teacher_checkpoint,
                                         args.num_images,
                                         args.cache_dir or osp.join(args.out, '.label_cache'),
                                         **extra)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}')
    if extra and ds_cfg['dataset']['type'] == 'ADSHeldOutDataset':
        ds_cfg['dataset'].update(extra)
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    ds = DATASETS.build(ds_cfg)
    student = load_student(cfg, args.checkpoint, args.device)
    summary = measure_agreement(ds, student, args.out, args.num)
    miou = summary['agreement_miou']
    print_log(f'mIoU against the teacher: {miou:.2f} over {len(ds)} images '
              f'({AGREEMENT_NOTE}); figures in {args.out}', logger='current')


if __name__ == '__main__':
    main()
