"""The ship stage: the student as plain MMSeg (``student/student.pth`` and
``student/student_config.py`` whose test set is the judged images with their teacher
labels), ``student/student.onnx`` with the parity check (tools/export_onnx.py's
contract: raw 0-255 BGR, N x 3 x H x W, static at the crop), and the compression
table: parameters, FLOPs and latency of teacher vs student, PyTorch and onnxruntime,
on this machine."""
import os
import os.path as osp
import statistics
import tempfile
import time

import numpy as np
import torch
from mmengine.config import Config

from ...core.atomic_file import atomic_copy, atomic_write
from ...core.teacher import load_model_config
from ...core.teacher_defaults import default_eval_pipeline
from ...models.complexity import segmentor_complexity
from ...models.data_free_distiller import distiller_data_preprocessor
from ...models.onnx_export import (PARITY_ATOL, build_exportable, export_and_check,
                                   export_onnx)
from ...models.onnx_parity import ort_session
from ...models.student_export import export_student_from_checkpoint

LATENCY_REPEATS = 5  # timed runs after one warm-up; the median is reported


def judge_set(judge_ds, out_dir):
    """A plain MMSeg dataset folder of the judged images: ``img/<k>.img`` links to the
    pool images (decoded by content), ``ann/<k>.png`` copies of their teacher labels."""
    for sub in ('img', 'ann'):
        os.makedirs(osp.join(out_dir, sub), exist_ok=True)
    for k in range(len(judge_ds)):
        info = judge_ds.get_data_info(k)
        link = osp.join(out_dir, 'img', f'{k:05d}.img')
        if osp.lexists(link):
            os.unlink(link)  # a link this stage made on an earlier run
        os.symlink(osp.abspath(info['img_path']), link)
        atomic_copy(info['seg_map_path'], osp.join(out_dir, 'ann', f'{k:05d}.png'))
    return out_dir


def plain_student_config(path, cfg, judge_dir, classes):
    """Adds to the exported config the test set and pipeline the judge stage used."""
    out = Config.fromfile(path)
    pipeline = cfg.val_dataloader.dataset.get('pipeline') or default_eval_pipeline(
        cfg.model.teacher, 'compress ship')
    out.test_pipeline = pipeline
    out.test_dataloader = dict(
        batch_size=1, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='BaseSegDataset', data_root=judge_dir, img_suffix='.img',
                     seg_map_suffix='.png', data_prefix=dict(img_path='img', seg_map_path='ann'),
                     metainfo=dict(classes=tuple(classes)), pipeline=pipeline))
    out.test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
    out.test_cfg = dict(type='TestLoop')
    text = out.pretty_text
    with atomic_write(path, encoding='utf-8') as f:
        f.write(text)


def _median_time(fn):
    fn()
    times = []
    for _ in range(LATENCY_REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _row(wrapper, segmentor, shape, onnx_file):
    params, _, flops = segmentor_complexity(segmentor, shape)
    image = torch.from_numpy(np.random.default_rng(0).integers(
        0, 256, (1, 3, *shape)).astype(np.float32))
    with torch.no_grad():
        pt = _median_time(lambda: wrapper(image))
    sess = ort_session(onnx_file)
    name = sess.get_inputs()[0].name
    ort = _median_time(lambda: sess.run(None, {name: image.numpy()}))
    return dict(params=int(params), flops=int(flops), pytorch_s=pt, onnxruntime_s=ort,
                onnx_mib=osp.getsize(onnx_file) / 2**20)


def compression_table(cfg, student_cfg_path, student_ckpt, student_onnx, shape):
    """Teacher vs student rows at ``shape`` (random teacher weights: size, FLOPs and
    latency do not depend on their values; the teacher graph is exported to a temporary
    file)."""
    rows = {}
    wrapper, segmentor, _ = build_exportable(student_cfg_path, student_ckpt)
    rows['student'] = _row(wrapper, segmentor, shape, student_onnx)
    teacher = load_model_config(cfg.model.teacher)
    teacher.data_preprocessor = distiller_data_preprocessor(
        cfg.model.get('data_preprocessor'), teacher.get('data_preprocessor'))
    torch.manual_seed(0)
    wrapper, segmentor, _ = build_exportable(Config(dict(model=teacher)))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = osp.join(tmp, 'teacher.onnx')
        export_onnx(wrapper, onnx_file, shape)
        rows['teacher'] = _row(wrapper, segmentor, shape, onnx_file)
    t, s = rows['teacher'], rows['student']
    rows['ratio'] = {k: (t[k] / s[k] if s[k] else None) for k in s}
    rows['shape'] = list(shape)
    rows['threads'] = torch.get_num_threads()
    rows['machine'] = _cpu_name()
    return rows


def _cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def run_ship(cfg, dfss_config, checkpoint, judge_ds, out_dir, crop):
    """Exports the student, its ONNX graph (parity checked) and measures the table."""
    os.makedirs(out_dir, exist_ok=True)
    ckpt, cfg_path = export_student_from_checkpoint(checkpoint, out_dir, config=dfss_config)
    judge_dir = judge_set(judge_ds, osp.join(out_dir, 'judge_set'))
    plain_student_config(cfg_path, cfg, judge_dir, judge_ds.metainfo['classes'])
    onnx_file = osp.join(out_dir, 'student.onnx')
    checks = export_and_check(cfg_path, ckpt, onnx_file, shape=tuple(crop))
    table = compression_table(cfg, cfg_path, ckpt, onnx_file, tuple(crop))
    return dict(checkpoint=ckpt, config=cfg_path, onnx=onnx_file, judge_set=judge_dir,
                max_abs_diff=max(c['max_abs_diff'] for c in checks),
                parity_agreement=min(c['agreement'] for c in checks),
                parity_atol=PARITY_ATOL, compression=table)
