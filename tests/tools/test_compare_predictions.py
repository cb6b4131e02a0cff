"""tools/compare_predictions.py: input | teacher | student | disagreement, worst
agreement first, and the per-class agreement the same as MMSeg's IoUMetric."""
import csv
import glob
import json
import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.evaluation import IoUMetric
from PIL import Image

from mmseg_dfss.core.teacher import build_segmentor
from mmseg_dfss.datasets import TeacherLabeledDataset
from mmseg_dfss.models.student_export import student_config

DFSS = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'
TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'


@pytest.mark.slow
def test_pictures_worst_first_and_agreement_equals_iou_metric(tmp_path, synthetic_root,
                                                             repo_root, teacher_ckpt, tool):
    images = tmp_path / 'images'
    images.mkdir()
    pool = sorted(glob.glob(osp.join(synthetic_root, 'pool', '**', '*.png'), recursive=True))
    for k, src in enumerate(pool[:6]):
        shutil.copy(src, images / f'img{k}.png')
    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(repo_root, DFSS))
    torch.manual_seed(3)
    student = build_segmentor(student_config(cfg).model)
    student.init_weights()
    ckpt = str(tmp_path / 'student.pth')
    torch.save(dict(state_dict={f'student.{k}': v for k, v in student.state_dict().items()}),
               ckpt)
    out = tmp_path / 'out'
    tool('tools/compare_predictions.py', DFSS, ckpt, '--images', str(images), '--out', str(out),
         '--num', '3', '--teacher-checkpoint', teacher_ckpt)
    drawn = sorted(glob.glob(str(out / 'compare_*.png')))
    assert len(drawn) == 3 and osp.isfile(out / 'per_class_agreement.png')
    assert Image.open(drawn[0]).size[0] > 3 * Image.open(drawn[0]).size[1]  # 4 panels in a row
    rows = list(csv.DictReader(open(out / 'per_image.csv')))
    scores = [float(r['agreement_miou']) for r in rows]
    assert len(rows) == 6 and scores == sorted(scores)
    summary = json.load(open(out / 'summary.json'))
    # the same student through MMSeg's IoUMetric on the same teacher labels
    student.eval()
    ds = TeacherLabeledDataset(
        dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=str(images))),
        teacher=osp.join(repo_root, TEACHER), teacher_checkpoint=teacher_ckpt,
        cache_dir=str(out / '.label_cache'), pipeline=cfg.val_dataloader.dataset.pipeline,
        metainfo_from='SyntheticScenesDataset', progress=False)
    assert ds.labelled_here == []  # the tool's labels were reused
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = ds.metainfo
    # one thread, as the tool ran (run_tool): the same float32 sums, so the same argmax
    # on every pixel, even where a random student's top-2 logits are nearly tied
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i in range(len(ds)):
            data = ds[i]
            batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
            with torch.no_grad():
                metric.process(batch, [o.to_dict() for o in student.test_step(batch)])
    finally:
        torch.set_num_threads(threads)
    expected = metric.compute_metrics(metric.results)['mIoU']
    assert summary['agreement_miou'] == pytest.approx(expected, abs=0.01)
    assert 'not accuracy' in summary['note']
