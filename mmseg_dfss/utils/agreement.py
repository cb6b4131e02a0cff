"""Agreement of a student with its teacher on teacher-labelled images: per class and
per image, and the figures of where they disagree (worst image first). Agreement,
not accuracy: the teacher's predictions are the reference (the paper's Fig. 4 view,
measured). Shared by tools/compare_predictions.py and tools/compress.py's judge stage."""
import csv
import json
import os.path as osp

import numpy as np
import torch
from mmengine.utils import ProgressBar
from PIL import Image

from ..core.atomic_file import atomic_write, save_figure
from ..datasets.teacher_labeled import AGREEMENT_NOTE


def _palette(palette, n):
    if palette is not None and len(palette) >= n:
        return palette
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 3)).tolist()


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
    save_figure(fig, path, dpi=80)
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
    save_figure(fig, path, dpi=80)
    plt.close(fig)


def measure_agreement(ds, student, out, num=8):
    """Runs ``student`` on the teacher-labelled dataset ``ds``; writes ``out/compare_<k>
    .png`` for the ``num`` worst images, ``out/per_class_agreement.png``,
    ``out/per_image.csv`` and ``out/summary.json``; returns the summary (mIoU on
    MMSeg's 0-100 scale, summed over images as MMSeg's IoUMetric does)."""
    classes = ds.metainfo['classes']
    n = len(classes)
    palette = _palette(ds.metainfo.get('palette'), n)
    inter, union, rows, preds = np.zeros(n), np.zeros(n), [], {}
    bar = ProgressBar(len(ds))
    for i in range(len(ds)):
        data = ds[i]
        with torch.no_grad():
            result = student.test_step(dict(inputs=[data['inputs']],
                                         data_samples=[data['data_samples']]))[0]
        pred = result.pred_sem_seg.data[0].cpu().numpy()
        label = result.gt_sem_seg.data[0].cpu().numpy()
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
    drawn = []
    for k, row in enumerate(rows[:num]):
        i = row['index']
        img = mmcv.imread(row['img_path'], channel_order='rgb')
        label = np.array(Image.open(ds.get_data_info(i)['seg_map_path']))
        drawn.append(osp.join(out, f'compare_{k:02d}.png'))
        draw_image(drawn[-1], img, label, preds[i], palette,
                   f'{osp.basename(row["img_path"])}: agreement mIoU '
                   f'{row["agreement_miou"]:.1f}%, pixels {row["pixel_agreement"]:.1f}%')
    present = union > 0
    iou = np.where(present, inter / np.maximum(union, 1), 0.0)
    draw_bars(osp.join(out, 'per_class_agreement.png'), classes, iou, present)
    with atomic_write(osp.join(out, 'per_image.csv'), newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    miou = 100 * float(iou[present].mean())
    summary = dict(agreement_miou=miou, num_images=len(ds), num_unreadable=ds.num_unreadable,
                   per_class={str(classes[c]): 100 * float(iou[c]) for c in range(n)
                              if present[c]}, note=AGREEMENT_NOTE,
                   images=[r['img_path'] for r in sorted(rows, key=lambda r: r['index'])],
                   worst=drawn, per_class_figure=osp.join(out, 'per_class_agreement.png'))
    with atomic_write(osp.join(out, 'summary.json')) as f:
        json.dump(summary, f, indent=1)
    return summary
