"""Cost of a label-free validation once the teacher labels are cached.

    OMP_NUM_THREADS=1 python benchmarks/teacher_label_val.py [--num 100] [--size 96]
        [--repeats 3] [--device cpu|cuda]

On ``--num`` synthetic pool images (``--size`` px; the demo's), with the demo's
teacher (DeepLabV3-R18-tiny, random weights) and student (DeepLabV3-MobileNetV2-tiny):

(a) validation: a pass of what MMEngine's ValLoop does over a TeacherLabeledDataset
    whose labels are cached (images and PNG labels loaded, student ``val_step``,
    MMSeg's IoUMetric through MMEngine's Evaluator);
(b) test: the student's ``test_step`` alone over the same images (image-only
    pipeline, no label, no metric): the lower bound of any validation.

The first validation (labelling, the teacher's forward per image) is timed once. (a)
and (b) alternate ``--repeats`` times; prints the medians and the ratio a/b (target
<= 1.1).
"""
import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
TEACHER = osp.join(REPO, 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py')
STUDENT = osp.join(REPO, 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py')
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]


def loop(ds, step, evaluator=None):
    """One pass over ``ds`` as MMEngine's loops do it (batch 1, pseudo_collate)."""
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader
    start = time.perf_counter()
    for batch in DataLoader(ds, batch_size=1, shuffle=False, collate_fn=pseudo_collate):
        with torch.no_grad():
            out = step(batch)
        if evaluator is not None:
            evaluator.process(data_samples=out, data_batch=batch)
    if evaluator is not None:
        evaluator.evaluate(len(ds))
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--num', type=int, default=100)
    p.add_argument('--size', type=int, default=96)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = p.parse_args()
    from mmengine.evaluator import Evaluator
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    import mmseg_dfss  # noqa: F401
    from mmseg_dfss.core import build_frozen_segmentor
    from mmseg_dfss.datasets import TeacherLabeledDataset, UnlabeledImageDataset
    from mmseg_dfss.datasets.synthetic import generate_synthetic
    from mmseg_dfss.datasets.synthetic.rooms import CLASSES, PALETTE
    init_default_scope('mmseg')
    MMLogger.get_instance('mmengine', log_level='WARNING')
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        generate_synthetic(tmp, seed=0, num_train=1, num_test=1, pool_size=args.num,
                           size=args.size, progress=False)
        teacher = build_frozen_segmentor(TEACHER, allow_random_teacher=True)
        ckpt = osp.join(tmp, 'teacher.pth')
        torch.save(dict(state_dict=teacher.state_dict()), ckpt)
        images = dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=f'{tmp}/pool'))
        t0 = time.perf_counter()
        ds = TeacherLabeledDataset(dataset=images, teacher=TEACHER, teacher_checkpoint=ckpt,
                                   cache_dir=osp.join(tmp, 'labels'), pipeline=PIPELINE,
                                   metainfo=dict(classes=CLASSES, palette=PALETTE),
                                   device=args.device, progress=False)
        first = time.perf_counter() - t0
        plain = UnlabeledImageDataset(data_prefix=dict(img_path=f'{tmp}/pool'),
                                      pipeline=[PIPELINE[0], PIPELINE[2]])
        student = build_frozen_segmentor(STUDENT, allow_random_teacher=True).to(args.device)
        val, test = [], []
        loop(plain, student.test_step)  # warm-up
        for _ in range(args.repeats):
            evaluator = Evaluator(dict(type='IoUMetric', iou_metrics=['mIoU']))
            evaluator.dataset_meta = ds.metainfo
            val.append(loop(ds, student.val_step, evaluator))
            test.append(loop(plain, student.test_step))
    a, b = statistics.median(val), statistics.median(test)
    print(f'{len(ds)} images of {args.size} px, device {args.device}, torch threads '
          f'{torch.get_num_threads()}')
    print(f'first validation (teacher labels made): {first:.2f} s')
    print(f'(a) validation on cached teacher labels: {a:.3f} s (median of {args.repeats})')
    print(f'(b) student-only test, same images:      {b:.3f} s')
    print(f'ratio a/b = {a / b:.3f} (target <= 1.1)')


if __name__ == '__main__':
    main()
