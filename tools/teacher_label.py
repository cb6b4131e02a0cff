"""Writes images and their frozen-teacher labels in MMSeg's BaseSegDataset layout, so
plain MMSeg (its own tools/test.py, no plugin) can score any model against the teacher:

    OUT/img_dir/<name>.<ext>   the images (copied; converted to PNG if suffixes are mixed)
    OUT/ann_dir/<name>.png     the teacher's test-mode prediction at the image's size
    OUT/dataset.py             test_dataloader / test_evaluator for these files
    OUT/test_config.py         --model-config CFG with its test set replaced (optional)

    python tools/teacher_label.py configs/dfss/deeplabv3_r50_to_mbv2_nyuv2.py \
        --images data/val_images --out data/teacher_labelled
    python <mmseg>/tools/test.py data/teacher_labelled/test_config.py student.pth

The mIoU MMSeg then reports is agreement with the teacher, not accuracy.
Every output file is a copy written under a temporary name and moved into place, never
a link to a source image or a cached label. OUT must be new, empty, or an earlier
output of this tool (its OUT/.teacher_label.json): a rerun replaces only what that
marker names.
CONFIG is a DFSS config (its distiller's teacher) or a teacher config with
--checkpoint. --images: a folder, a list file, or 'held-out' (the pool images ADS
ranks after the training eps).
"""
import argparse
import json
import os
import os.path as osp
import shutil

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

import mmseg_dfss  # noqa: F401  (registers the plugin's datasets)
from mmseg_dfss.core.atomic_file import atomic_copy, atomic_write
from mmseg_dfss.datasets.teacher_label_format import (label_ignore_index,
                                                      label_loading_pipeline, wide_labels)
from mmseg_dfss.datasets.teacher_labeled import AGREEMENT_NOTE
from mmseg_dfss.utils.label_free import DEFAULT_NUM_IMAGES, teacher_labeled_dataset


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='a DFSS config, or a teacher config with --checkpoint')
    p.add_argument('--images', required=True,
                   help="a folder of images, a list file, or 'held-out'")
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--checkpoint', help="the teacher's weights (default: the DFSS "
                   "config's model.teacher_checkpoint)")
    p.add_argument('--num', type=int, default=DEFAULT_NUM_IMAGES,
                   help="images of --images held-out")
    p.add_argument('--model-config', help='also write OUT/test_config.py: this config '
                   "(e.g. an exported student's student_config.py) tested on the labels")
    p.add_argument('--cache-dir', help='label cache (default: OUT/.label_cache)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override settings of CONFIG, as in tools/train.py')
    p.add_argument('--allow-random-teacher', action='store_true', help=argparse.SUPPRESS)
    return p.parse_args()


MARKER = '.teacher_label.json'
OWN_FOLDERS = ('img_dir', 'ann_dir')
OWN_FILES = ('dataset.py', 'test_config.py')


def claim_out(out):
    """Makes ``out`` this tool's (its marker written first), removing what an earlier
    run's marker names; refuses a non-empty folder without the marker, and links."""
    marker = osp.join(out, MARKER)
    if osp.islink(out) or osp.islink(marker):
        raise SystemExit(f'teacher_label: {out!r} (or its {MARKER}) is a link; it writes '
                         'only into folders it made: choose a new --out')
    if osp.isdir(out) and os.listdir(out) and not osp.isfile(marker):
        raise SystemExit(f'teacher_label: --out {out!r} is not empty and was not written by '
                         'this tool (no .teacher_label.json); it never writes into or deletes '
                         'files it did not make: give a new or empty folder')
    for name in OWN_FOLDERS + OWN_FILES:
        path = osp.join(out, name)
        if osp.islink(path):
            raise SystemExit(f'teacher_label: {path!r} is a link; it never writes through '
                             'a link: remove it or choose a new --out')
    os.makedirs(out, exist_ok=True)
    with atomic_write(marker) as f:
        json.dump(dict(tool='tools/teacher_label.py', folders=list(OWN_FOLDERS),
                       files=list(OWN_FILES)), f)
    for name in OWN_FOLDERS:  # an earlier run's images and labels: no stale file survives
        shutil.rmtree(osp.join(out, name), ignore_errors=True)
    for name in OWN_FILES:
        if osp.isfile(osp.join(out, name)):
            os.remove(osp.join(out, name))


def export(ds, out):
    """Writes ``ds``'s images and labels under ``out`` (copies, each by a temporary name
    then ``os.replace``); returns the image suffix."""
    import cv2
    import mmcv
    img_dir, ann_dir = osp.join(out, 'img_dir'), osp.join(out, 'ann_dir')
    for d in (img_dir, ann_dir):
        os.makedirs(d, exist_ok=True)
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    suffixes = {osp.splitext(info['img_path'])[1].lower() for info in infos}
    convert = len(suffixes) > 1
    suffix = '.png' if convert else suffixes.pop()
    bar = ProgressBar(len(infos))
    for k, info in enumerate(infos):
        stem = f'{k:06d}_' + osp.splitext(osp.basename(info['img_path']))[0]
        if convert:  # mixed suffixes: the decoded pixels, losslessly
            ok, png = cv2.imencode('.png', mmcv.imread(info['img_path']))
            if not ok:
                raise OSError(f'teacher_label: could not encode {info["img_path"]!r} as PNG')
            with atomic_write(osp.join(img_dir, stem + suffix), 'wb') as f:
                f.write(png.tobytes())
        else:
            atomic_copy(info['img_path'], osp.join(img_dir, stem + suffix))
        atomic_copy(info['seg_map_path'], osp.join(ann_dir, stem + '.png'))
        bar.update()
    print()
    return suffix


def dataset_text(out, suffix, metainfo, pipeline):
    """The ``test_dataloader``/``test_evaluator`` of the written files. The pipeline's
    label loader is fitted to teacher labels (no ``reduce_zero_label``; more than 255
    classes: 16-bit labels, this plugin's ``LoadTeacherLabel`` and an ``ignore_index``
    that is no class)."""
    num_classes = len(metainfo['classes'])
    pipeline = label_loading_pipeline(pipeline, num_classes, owner='teacher_label.py')
    evaluator = "test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])\n"
    head = ''
    if wide_labels(num_classes):
        evaluator = evaluator[:-2] + f', ignore_index={label_ignore_index(num_classes)})\n'
        head = ("# more than 255 classes: MMSeg's LoadAnnotations reads 8 bits only, so the "
                "labels load with\n# mmseg_dfss's LoadTeacherLabel\n"
                "custom_imports = dict(imports=['mmseg_dfss'], allow_failed_imports=False)\n")
    loader = dict(batch_size=1, num_workers=2, persistent_workers=False,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  dataset=dict(type='BaseSegDataset', data_root=osp.abspath(out),
                               data_prefix=dict(img_path='img_dir', seg_map_path='ann_dir'),
                               img_suffix=suffix, seg_map_suffix='.png',
                               metainfo=dict(classes=tuple(metainfo['classes']),
                                             palette=[list(c) for c in metainfo['palette']]),
                               reduce_zero_label=False, pipeline=pipeline))
    return (f'# Images labelled by a frozen teacher (tools/teacher_label.py). {AGREEMENT_NOTE}.\n'
            f'{head}test_dataloader = {loader!r}\n{evaluator}')


def main():
    args = parse_args()
    claim_out(args.out)  # before the label cache (OUT/.label_cache by default) is written
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    extra = dict(allow_random_teacher=True) if args.allow_random_teacher else {}
    ds_cfg = teacher_labeled_dataset(cfg, args.images, args.checkpoint, args.num,
                                     args.cache_dir or osp.join(args.out, '.label_cache'),
                                     **extra)
    if extra and ds_cfg['dataset']['type'] == 'ADSHeldOutDataset':
        ds_cfg['dataset'].update(extra)
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    ds = DATASETS.build(ds_cfg)
    suffix = export(ds, args.out)
    text = dataset_text(args.out, suffix, ds.metainfo, ds_cfg['pipeline'])
    with atomic_write(osp.join(args.out, 'dataset.py')) as f:
        f.write(text)
    if args.model_config:
        base = osp.abspath(args.model_config)
        with atomic_write(osp.join(args.out, 'test_config.py')) as f:
            f.write(f'_base_ = [{base!r}]\n' + text.replace(
                'test_dataloader = dict(', 'test_dataloader = dict(_delete_=True, ', 1)
                    + "test_cfg = dict(type='TestLoop')\n")
    print_log(f'wrote {len(ds)} images and teacher labels to {args.out} ({ds.num_unreadable} '
              f'unreadable skipped). {AGREEMENT_NOTE}.', logger='current')


if __name__ == '__main__':
    main()
