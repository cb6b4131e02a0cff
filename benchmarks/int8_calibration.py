"""Which data-free images should calibrate the student's INT8 quantization? ADS-kept
pool images vs random pool images (three seeds) vs the pool images ADS ranked worst,
all of one size, on a DFSS student (by default the demo's, tools/demo.py).

    python benchmarks/int8_calibration.py --demo-dir work_dirs/demo
    python benchmarks/int8_calibration.py --demo-dir work_dirs/demo --sweep   # settings

Per calibration set, the INT8 graph (mmseg_dfss.models.onnx_quantize, default
settings) is measured three ways:

- agreement with FP32: argmax agreement with the FP32 graph over the pixels of the ADS
  held-out pool images (ranked just after the eps cut; never in any calibration set);
- agreement with the teacher on the same held-out images (the teacher's test-mode
  prediction as the label: agreement, not accuracy);
- true mIoU on the demo's labelled test rooms (MMSeg's IoUMetric arithmetic: one
  confusion over the split, ignore 255).

The FP32 graph's row is the reference. ``--sweep`` also quantizes with each setting
changed alone from the defaults (ADS calibration) and times each graph (onnxruntime,
1 thread, median of --repeats). The ADS ranking is read from the DFSS run's score
cache (nothing is scored); the student is exported with tools/export_onnx.py.
Everything is written under --out-dir (results.json and the .onnx files).
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
DFSS_CFG = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'
TEACHER_CFG = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
SWEEP = [('activation_type', 'QInt8'), ('reduce_range', True), ('per_channel', False),
         ('calibrate_method', 'Entropy'), ('calibrate_method', 'Percentile'),
         ('pre_process', False), ('fp32_tail', False)]


def last_checkpoint(folder):
    found = sorted(glob.glob(osp.join(folder, 'iter_*.pth')),
                   key=lambda f: int(re.findall(r'\d+', osp.basename(f))[0]))
    if not found:
        sys.exit(f'no iter_*.pth in {folder}: give --teacher-checkpoint')
    return found[-1]


def demo_paths(args):
    """The demo's files (tools/demo.py's layout), each overridable."""
    d = osp.abspath(args.demo_dir)
    dist = args.distill_dir or osp.join(d, 'compress')
    teacher = args.teacher_checkpoint or last_checkpoint(osp.join(d, 'teacher'))
    opts = {'model.teacher_checkpoint': teacher,  # the ADS wrapper takes the model's
            'train_dataloader.dataset.dataset.data_root': osp.join(d, 'data', 'pool'),
            'train_dataloader.dataset.num_samples': args.eps,
            'train_dataloader.dataset.cache_dir': args.cache_dir or osp.join(d, 'ads_cache')}
    return dict(student_cfg=osp.join(dist, 'student', 'student_config.py'),
                student=osp.join(dist, 'student', 'student.pth'), teacher=teacher,
                test=osp.join(d, 'data', 'scenes'), cfg_options=opts)


def export_fp32(p, out, shape):
    cmd = [sys.executable, osp.join(REPO, 'tools', 'export_onnx.py'), p['student_cfg'],
           p['student'], '--out', out, '--shape', *map(str, shape)]
    print('$ python ' + ' '.join(osp.relpath(c, REPO) if c.startswith(REPO) else c
                                 for c in cmd[1:]), flush=True)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f'export failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}')
    print(proc.stdout.strip().splitlines()[-2], flush=True)


def teacher_predictions(teacher_ckpt, paths):
    """The teacher's test-mode argmax (MMSeg's test_step) of each image, at its size."""
    import mmcv
    import torch

    from mmseg_dfss.core import build_frozen_segmentor
    from mmseg_dfss.models.onnx_export import mmseg_seg_logits
    model = build_frozen_segmentor(osp.join(REPO, TEACHER_CFG), teacher_ckpt, 'teacher')
    out = {}
    for p in paths:
        img = mmcv.imread(p, 'color')
        x = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32))
        out[p] = mmseg_seg_logits(model, x)[0].argmax(0).numpy()
    return out


def miou(preds, labels, num_classes):
    import torch
    from mmseg.evaluation.metrics import IoUMetric
    areas = [IoUMetric.intersect_and_union(torch.from_numpy(preds[k]).long(),
                                           torch.from_numpy(labels[k]).long(), num_classes, 255)
             for k in labels]
    totals = [sum(a[i] for a in areas) for i in range(4)]
    iou = IoUMetric.total_area_to_metrics(*totals, metrics=['mIoU'])['IoU']
    return float(np.nanmean(iou.numpy() if hasattr(iou, 'numpy') else iou))


def agreement(a, b):
    same = sum(int((a[k] == b[k]).sum()) for k in b)
    return same / sum(int(b[k].size) for k in b)


def latency(onnx_file, x, repeats):
    from mmseg_dfss.models.onnx_export import ort_session
    sess = ort_session(onnx_file, threads=1)
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--demo-dir', default='work_dirs/demo')
    p.add_argument('--distill-dir', help='the DFSS run (its student/ folder; default: the '
                   "demo's compress run, DEMO/compress)")
    p.add_argument('--teacher-checkpoint', help="default: the demo's last teacher/iter_*.pth")
    p.add_argument('--cache-dir', help="the ADS score cache (default: the demo's ads_cache)")
    p.add_argument('--eps', type=int, default=600, help="the DFSS run's eps (the demo's 600)")
    p.add_argument('--num', type=int, default=200, help='images per calibration set')
    p.add_argument('--num-check', type=int, default=200, help='ADS held-out check images')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--shape', type=int, nargs=2, default=[96, 96])
    p.add_argument('--sweep', action='store_true', help='also each setting changed alone')
    p.add_argument('--repeats', type=int, default=20, help='timed runs (--sweep)')
    p.add_argument('--out-dir', default='work_dirs/int8_calibration')
    args = p.parse_args()

    import mmseg_dfss  # noqa: F401
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    from mmseg_dfss.datasets.calibration_images import ads_ranking, spread
    from mmseg_dfss.models.onnx_quantize import (DEFAULT_SETTINGS, predictions, quantize_int8,
                                                 read_graph_image)
    paths = demo_paths(args)
    os.makedirs(args.out_dir, exist_ok=True)
    shape = tuple(args.shape)
    fp32 = osp.join(args.out_dir, 'student_fp32.onnx')
    export_fp32(paths, fp32, shape)

    rank = ads_ranking(osp.join(REPO, DFSS_CFG), paths['cfg_options'])
    check = rank.held_out(args.num_check)
    rest = sorted(set(rank.paths) - set(check))
    sets = {'ADS-kept': spread(rank.kept, args.num)}
    for s in args.seeds:
        sets[f'random pool, seed {s}'] = sorted(
            np.random.default_rng(s).choice(rest, args.num, replace=False).tolist())
    sets['ADS-worst'] = rank.worst(args.num)
    clash = [k for k, v in sets.items() if set(v) & set(check)]
    if clash:
        sys.exit(f'calibration sets {clash} overlap the held-out check images: the pool is too '
                 'small for --num/--num-check')

    test_imgs = sorted(glob.glob(osp.join(paths['test'], 'img_dir', 'test', '*.png')))
    import mmcv
    labels = {p: mmcv.imread(p.replace('img_dir', 'ann_dir'), 'unchanged') for p in test_imgs}
    print(f'ADS ranking: {len(rank.paths)} readable of {rank.pool_size} pool images, eps '
          f'{rank.eps}; check: {len(check)} held-out images; test rooms: {len(test_imgs)}',
          flush=True)
    teacher = teacher_predictions(paths['teacher'], check)
    ref, _ = predictions(fp32, check, shape)
    ref_test, _ = predictions(fp32, test_imgs, shape)
    num_classes = 7

    def measure(onnx_file):
        got, _ = predictions(onnx_file, check, shape)
        got_test, _ = predictions(onnx_file, test_imgs, shape)
        return dict(fp32_agreement=agreement(got, ref), teacher_agreement=agreement(got, teacher),
                    miou=miou(got_test, labels, num_classes),
                    mib=osp.getsize(onnx_file) / 2**20)

    rows = {'FP32 (reference)': measure(fp32)}
    for name, images in sets.items():
        out = osp.join(args.out_dir, 'int8_' + name.replace(', ', '_').replace(' ', '_') + '.onnx')
        r = quantize_int8(fp32, out, images, settings=None)
        rows[name] = dict(measure(out), images=r['calibration_used'])
        print(name, rows[name], flush=True)
    rand = [rows[k] for k in rows if k.startswith('random')]

    def cell(key, values, scale=100):
        v = np.array([r[key] for r in values]) * scale
        return f'{v.mean():.2f}' if len(v) == 1 else f'{v.mean():.2f} ± {v.std(ddof=1):.2f}'

    print(f'\nINT8 calibration sets of {args.num} images, check: {len(check)} ADS held-out '
          f'images, test: {len(test_imgs)} labelled rooms (student at {shape[0]}x{shape[1]})\n')
    print('| calibration set | agreement with FP32 (%) | agreement with teacher (%) | '
          'true mIoU (%) |\n|---|---|---|---|')
    for name in ['FP32 (reference)', 'ADS-kept']:
        print(f'| {name} | {cell("fp32_agreement", [rows[name]])} | '
              f'{cell("teacher_agreement", [rows[name]])} | {cell("miou", [rows[name]])} |')
    print(f'| random pool ({len(rand)} seeds, mean ± std) | {cell("fp32_agreement", rand)} | '
          f'{cell("teacher_agreement", rand)} | {cell("miou", rand)} |')
    name = 'ADS-worst'
    print(f'| {name} | {cell("fp32_agreement", [rows[name]])} | '
          f'{cell("teacher_agreement", [rows[name]])} | {cell("miou", [rows[name]])} |')

    result = dict(rows=rows, num=args.num, check=len(check), test=len(test_imgs),
                  defaults=DEFAULT_SETTINGS)
    if args.sweep:
        x = read_graph_image(test_imgs[0], shape)
        sweep = {'defaults': dict(rows['ADS-kept'], ms=latency(osp.join(
            args.out_dir, 'int8_ADS-kept.onnx'), x, args.repeats) * 1e3)}
        sweep['FP32'] = dict(rows['FP32 (reference)'], ms=latency(fp32, x, args.repeats) * 1e3)
        for key, value in SWEEP:
            out = osp.join(args.out_dir, f'sweep_{key}_{value}.onnx')
            quantize_int8(fp32, out, sets['ADS-kept'], settings={key: value})
            sweep[f'{key}={value}'] = dict(measure(out), ms=latency(out, x, args.repeats) * 1e3)
            print(key, value, sweep[f'{key}={value}'], flush=True)
        print(f'\nSettings, each changed alone from the defaults {DEFAULT_SETTINGS} (ADS-kept '
              'calibration; latency: onnxruntime, 1 thread, median)\n')
        print('| setting | agreement with FP32 (%) | agreement with teacher (%) | true mIoU (%) '
              '| file (MiB) | latency (ms) |\n|---|---|---|---|---|---|')
        for k, r in sweep.items():
            print(f'| {k} | {r["fp32_agreement"] * 100:.2f} | {r["teacher_agreement"] * 100:.2f} '
                  f'| {r["miou"] * 100:.2f} | {r["mib"]:.2f} | {r["ms"]:.2f} |')
        result['sweep'] = sweep
    with open(osp.join(args.out_dir, 'results.json'), 'w') as f:
        json.dump(result, f, indent=1, default=str)


if __name__ == '__main__':
    main()
