"""The judge stage: the trained student's agreement with the teacher on the held-out
pool images (mIoU and per class, 0-100; worst images first, side by side), and with
``--val-dataset`` its true mIoU on that labelled MMSeg dataset."""
import copy
import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.utils import ProgressBar
from mmseg.registry import DATASETS

from ...utils.agreement import measure_agreement
from ...utils.label_free import load_student

# MMSeg's IoUMetric (1.2 line) reports mIoU rounded to 2 decimals: the agreement the judge
# reports and an evaluation of the exported config with tools/test.py differ by no more
IOU_METRIC_ROUNDING = 0.005


def _device():
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def true_miou(student, val_dataset_cfg):
    """mIoU and per-class IoU (0-100) of ``student`` on the ``test_dataloader`` (else
    ``val_dataloader``) dataset of a labelled MMSeg config, by MMSeg's IoUMetric: its
    accuracy on that set (``judge.val_dataset`` of the report)."""
    from mmseg.evaluation import IoUMetric
    vcfg = Config.fromfile(val_dataset_cfg)
    loader = vcfg.get('test_dataloader') or vcfg.get('val_dataloader')
    if not loader:
        raise ValueError(f'--val-dataset {val_dataset_cfg!r} has no test_dataloader or '
                         'val_dataloader')
    ds = DATASETS.build(copy.deepcopy(loader.dataset))
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = ds.metainfo
    bar = ProgressBar(len(ds))
    for i in range(len(ds)):
        data = ds[i]
        with torch.no_grad():
            out = student.test_step(dict(inputs=[data['inputs']],
                                         data_samples=[data['data_samples']]))
        metric.process(None, [o.to_dict() for o in out])
        bar.update()
    print(flush=True)
    res = metric.compute_metrics(metric.results)
    per_class = _per_class_iou(metric.results, ds.metainfo['classes'])
    return dict(miou=float(res['mIoU']), per_class=per_class, num_images=len(ds),
                config=osp.abspath(val_dataset_cfg) if osp.isfile(val_dataset_cfg)
                else val_dataset_cfg)


def _per_class_iou(results, classes):
    """``{class: IoU (0-100)}`` from IoUMetric's per-image areas, the classes that
    occur in a label or a prediction only (IoUMetric's NaN for the others)."""
    areas = [sum(r[k] for r in results) for k in range(3)]  # intersect, union, pred
    out = {}
    for c, name in enumerate(classes):
        union = float(areas[1][c])
        if union > 0:
            out[str(name)] = 100.0 * float(areas[0][c]) / union
    return out


def run_judge(cfg, checkpoint, out_dir, val_dataset=None, num_worst=8):
    """Agreement (and true mIoU with ``val_dataset``) of the student in ``checkpoint``."""
    os.makedirs(out_dir, exist_ok=True)
    ds = DATASETS.build(copy.deepcopy(cfg.val_dataloader.dataset))
    student = load_student(cfg, checkpoint, _device())
    s = measure_agreement(ds, student, out_dir, num_worst)
    result = dict(miou=s['agreement_miou'], per_class=s['per_class'], images=s['images'],
                  num_images=s['num_images'], num_unreadable=s['num_unreadable'],
                  worst=s['worst'], per_class_figure=s['per_class_figure'], note=s['note'],
                  checkpoint=checkpoint)
    if val_dataset:
        result['val_dataset'] = true_miou(student, val_dataset)
    return result
