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
import csv
import json
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.utils import ProgressBar
from PIL import Image

import mmseg_dfss  # noqa: F401  (registers the plugin)
from mmseg_dfss.datasets.teacher_labeled import AGREEMENT_NOTE
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


def colorize(label, palette):
    pal = np.asarray(palette, dtype=np.uint8)
    out = np.zeros(label.shape + (3, ), np.uint8)
    valid = label < len(pal)
    out[valid] = pal[label[valid]]
    return out


def disagreement(img_rgb, teacher, student):
    """The image in grey, pixels where the student differs from the teacher in red."""
    grey = (img_rgb.mean(axis=2, keepdims=True) * 0.5).astype(np.uint8).repeat(3, axis=2)
    grey[teacher != student] = (230, 30, 30)
    return grey


def per_class_counts(pred, label, num_classes):
    inter = np.bincount(label[pred == label], minlength=num_classes)[:num_classes]
    area_p = np.bincount(pred.ravel(), minlength=num_classes)[:num_classes]
    area_l = np.bincount(label.ravel(), minlength=num_classes)[:num_classes]
    return inter, area_p + area_l - inter


def draw_image(path, img_rgb, teacher, student, palette, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = [('input', img_rgb), ('teacher', colorize(teacher, palette)),
              ('student', colorize(student, palette)),
              ('disagreement (red)', disagreement(img_rgb, teacher, student))]
    h, w = teacher.shape
    fig, axes = plt.subplots(1, 4, figsize=(4 * 2.2 * w / max(h, w) + 0.4, 2.6))
    for ax, (name, im) in zip(axes, panels):
        ax.imshow(im, interpolation='nearest')
        ax.set_title(name, fontsize=8)
        ax.axis('off')
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def draw_bars(path, classes, iou, present):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    idx = [c for c in np.argsort(iou) if present[c]]
    fig, ax = plt.subplots(figsize=(5, 0.25 * len(idx) + 1.2))
    ax.barh([str(classes[c]) for c in idx], [100 * iou[c] for c in idx], color='#4477aa')
    ax.set_xlim(0, 100)
    ax.set_xlabel('IoU of the student against the teacher (%) - agreement, not accuracy',
                  fontsize=7)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


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
    classes, palette = ds.metainfo['classes'], ds.metainfo['palette']
    n = len(classes)
    inter, union, rows, preds = np.zeros(n), np.zeros(n), [], {}
    bar = ProgressBar(len(ds))
    for i in range(len(ds)):
        data = ds[i]
        with torch.no_grad():
            out = student.test_step(dict(inputs=[data['inputs']],
                                         data_samples=[data['data_samples']]))[0]
        pred = out.pred_sem_seg.data[0].cpu().numpy()
        label = out.gt_sem_seg.data[0].cpu().numpy()
        a, u = per_class_counts(pred, label, n)
        inter += a
        union += u
        with np.errstate(invalid='ignore', divide='ignore'):
            img_miou = float(np.nanmean(np.where(u > 0, a / u, np.nan)))
        rows.append(dict(index=i, img_path=ds.get_data_info(i)['img_path'],
                         agreement_miou=100 * img_miou,
                         pixel_agreement=100 * float((pred == label).mean())))
        preds[i] = pred
        bar.update()
    print()
    rows.sort(key=lambda r: (r['agreement_miou'], r['index']))
    import mmcv
    for k, row in enumerate(rows[:args.num]):
        i = row['index']
        img = mmcv.imread(row['img_path'], channel_order='rgb')
        label = np.array(Image.open(ds.get_data_info(i)['seg_map_path']))
        draw_image(osp.join(args.out, f'compare_{k:02d}.png'), img, label, preds[i], palette,
                   f'{osp.basename(row["img_path"])}: agreement mIoU '
                   f'{row["agreement_miou"]:.1f}%, pixels {row["pixel_agreement"]:.1f}%')
    present = union > 0
    iou = np.where(present, inter / np.maximum(union, 1), 0.0)
    draw_bars(osp.join(args.out, 'per_class_agreement.png'), classes, iou, present)
    with open(osp.join(args.out, 'per_image.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    miou = 100 * float(iou[present].mean())
    summary = dict(agreement_miou=miou, num_images=len(ds), num_unreadable=ds.num_unreadable,
                   per_class={str(classes[c]): 100 * float(iou[c]) for c in range(n)
                              if present[c]}, note=AGREEMENT_NOTE)
    with open(osp.join(args.out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print_log(f'mIoU against the teacher: {miou:.2f} over {len(ds)} images '
              f'({AGREEMENT_NOTE}); figures in {args.out}', logger='current')


if __name__ == '__main__':
    main()
