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
CONFIG is a DFSS config (its distiller's teacher) or a teacher config with
--checkpoint. --images: a folder, a list file, or 'held-out' (the pool images ADS
ranks after the training eps).
"""
import argparse
import os
import os.path as osp
import shutil

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

import mmseg_dfss  # noqa: F401  (registers the plugin's datasets)
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


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def export(ds, out):
    """Writes ``ds``'s images and labels under ``out``; returns the image suffix."""
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
            mmcv.imwrite(mmcv.imread(info['img_path']), osp.join(img_dir, stem + suffix))
        else:
            _link_or_copy(info['img_path'], osp.join(img_dir, stem + suffix))
        _link_or_copy(info['seg_map_path'], osp.join(ann_dir, stem + '.png'))
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
    with open(osp.join(args.out, 'dataset.py'), 'w') as f:
        f.write(text)
    if args.model_config:
        base = osp.abspath(args.model_config)
        with open(osp.join(args.out, 'test_config.py'), 'w') as f:
            f.write(f'_base_ = [{base!r}]\n' + text.replace(
                'test_dataloader = dict(', 'test_dataloader = dict(_delete_=True, ', 1)
                    + "test_cfg = dict(type='TestLoop')\n")
    print_log(f'wrote {len(ds)} images and teacher labels to {args.out} ({ds.num_unreadable} '
              f'unreadable skipped). {AGREEMENT_NOTE}.', logger='current')


if __name__ == '__main__':
    main()
