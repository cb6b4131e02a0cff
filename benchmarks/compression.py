"""What the compression bought: teacher vs student of a DFSS config at its test input
size, in PyTorch and onnxruntime. Parameters and FLOPs (benchmarks/model_complexity.py's
computation), latency per image (median of --repeats runs after one warm-up, batch 1,
1 thread and all threads), peak memory, and the teacher/student ratios.

    python benchmarks/compression.py configs/dfss/deeplabv3_r50_to_mbv2_nyuv2.py --shape 256 341
    python benchmarks/compression.py configs/dfss/deeplabv3_r50_to_mbv2_cityscapes.py

Weights are random (no checkpoint is read or downloaded): size, FLOPs and latency do
not depend on their values. Both models are what is deployed: SyncBN reverted,
auxiliary heads left out, the distiller's data_preprocessor (channel swap, mean/std)
included, whole-image forward at --shape (default: the config's test size; a slide
test_cfg runs this forward once per crop). ONNX graphs come from
mmseg_dfss.models.onnx_export (the code of tools/export_onnx.py), static shape.

``--int8 SPEC`` adds the student quantized to INT8 (mmseg_dfss.models.onnx_quantize,
tools/quantize_onnx.py's code; SPEC as there: a folder or ads:CONFIG): its file size,
onnxruntime latency, and the argmax agreement of INT8 with the FP32 student and with
the teacher graph on the check images. Agreement needs trained weights: give
``--student-checkpoint`` and ``--teacher-checkpoint`` (without them the agreement
with the teacher is not shown). INT8 speed depends on the CPU (VNNI or not): the
table's heading names it.

Each (model, runtime) is timed in its own process. Peak memory: on CPU, the peak
resident set above the process's RSS once the runtime is imported (weights +
activations + workspace); on CUDA, PyTorch's max_memory_allocated (onnxruntime on CUDA
when its CUDAExecutionProvider is installed).
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

from mmengine.config import DictAction

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
ROLES = ('teacher', 'student')


def rss_mib():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def peak_rss_mib():
    """VmHWM: this process image's peak RSS (ru_maxrss would carry the parent's over
    fork + exec)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError('no VmHWM in /proc/self/status (Linux only)')


def role_config(dfss_config, role):
    """A segmentor ``Config`` of the teacher or student of a DFSS config, with the
    distiller's data_preprocessor (what the exported student tests with)."""
    from mmengine.config import Config

    from mmseg_dfss.core import load_model_config
    from mmseg_dfss.models.data_free_distiller import distiller_data_preprocessor
    cfg = Config.fromfile(dfss_config)
    if cfg.model.get('type') != 'DataFreeDistiller':
        raise ValueError(f'{dfss_config}: model.type is {cfg.model.get("type")!r}, expected '
                         "'DataFreeDistiller'")
    model = load_model_config(cfg.model[role])
    teacher_dp = load_model_config(cfg.model.teacher).get('data_preprocessor')
    model.data_preprocessor = distiller_data_preprocessor(
        cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor'), teacher_dp)
    return cfg, Config(dict(model=model))


def build(dfss_config, role, checkpoint=None):
    import torch

    from mmseg_dfss.models.onnx_export import build_exportable
    torch.manual_seed(0)
    _, cfg = role_config(dfss_config, role)
    return build_exportable(cfg, checkpoint)


def cpu_name():
    """The CPU's model name and whether it has VNNI (INT8 dot products)."""
    name, flags = 'unknown CPU', set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name' and name == 'unknown CPU':
                    name = value.strip()
                elif key.strip() == 'flags':
                    flags |= set(value.split())
    except OSError:
        pass
    vnni = sorted(flags & {'avx512_vnni', 'avx_vnni'})
    return f'{name}, {"VNNI: " + "/".join(vnni) if vnni else "no VNNI"}'


def int8_rows(args, shape, student_onnx, teacher_onnx, tmp):
    """Quantizes the student graph (calibration and check images of ``args.int8``) and
    measures its size, agreement and latency."""
    from mmseg_dfss.datasets.calibration_images import calibration_sets
    from mmseg_dfss.models.onnx_quantize import argmax_agreement, quantize_int8
    sets = calibration_sets(args.int8, num=args.int8_num, cfg_options=args.cfg_options)
    out = osp.join(tmp, 'student_int8.onnx')
    q = quantize_int8(student_onnx, out, sets.calibration, shape)
    row = dict(onnx_mib=osp.getsize(out) / 2**20, check=len(sets.check),
               fp32_agreement=argmax_agreement(student_onnx, out, sets.check, shape)['agreement'])
    if args.student_checkpoint and args.teacher_checkpoint:
        row['teacher_agreement'] = argmax_agreement(teacher_onnx, out, sets.check,
                                                    shape)['agreement']
        row['student_teacher_agreement'] = argmax_agreement(teacher_onnx, student_onnx,
                                                            sets.check, shape)['agreement']
    row['onnxruntime'] = run_worker(args, 'student', 'onnxruntime', out)
    print(f'student INT8: {q["calibration_used"]} calibration images, {row}', flush=True)
    return row


def time_runs(fn, repeats, sync=lambda: None):
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def worker(args):
    """One (model, runtime) in this process: latency at 1 thread and all threads,
    peak memory; prints one JSON line."""
    import numpy as np
    import torch
    base = rss_mib()
    threads = [1, os.cpu_count()]
    out = dict(role=args.role, runtime=args.worker, threads=threads)
    image = np.random.default_rng(0).integers(0, 256, (1, 3, *args.shape)).astype(np.float32)
    cuda = args.device == 'cuda'
    if args.worker == 'pytorch':
        import mmseg_dfss  # noqa: F401
        from mmseg.utils import register_all_modules
        register_all_modules(init_default_scope=False)
        wrapper = build(args.config, args.role, checkpoint_of(args, args.role))[0].to(
            args.device)
        x = torch.from_numpy(image).to(args.device)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        lat = []
        for n in (threads[:1] if cuda else threads):
            torch.set_num_threads(n)
            with torch.no_grad():
                lat.append(time_runs(lambda: wrapper(x), args.repeats, sync))
        if cuda:
            out['peak_mib'] = torch.cuda.max_memory_allocated() / 2**20
    else:
        import onnxruntime as ort
        providers = ['CPUExecutionProvider']
        if cuda:
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                print(json.dumps(dict(out, skipped='onnxruntime has no CUDAExecutionProvider')))
                return
            providers = ['CUDAExecutionProvider']
        base = rss_mib()
        lat = []
        for n in (threads[:1] if cuda else threads):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = n
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(args.onnx, opts, providers=providers)
            lat.append(time_runs(lambda: sess.run(None, {'image': image}), args.repeats))
            del sess
    out['latency_s'] = lat
    if not cuda:
        out['peak_mib'] = peak_rss_mib() - base
    print(json.dumps(out))


def checkpoint_of(args, role):
    return getattr(args, f'{role}_checkpoint', None)


def run_worker(args, role, runtime, onnx_file):
    cmd = [sys.executable, osp.abspath(__file__), args.config, '--worker', runtime, '--role',
           role, '--shape', *map(str, args.shape), '--repeats', str(args.repeats), '--device',
           args.device, '--onnx', onnx_file]
    if checkpoint_of(args, role):
        cmd += [f'--{role}-checkpoint', checkpoint_of(args, role)]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f'{role}/{runtime} worker failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_ms(seconds):
    return f'{seconds * 1e3:,.0f} ms' if seconds >= 0.1 else f'{seconds * 1e3:.3g} ms'


def fmt_ratio(a, b):
    return f'{a / b:.1f}x' if b else '-'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='a DFSS (DataFreeDistiller) config')
    p.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=None,
                   help="input size (default: the config's test size, see "
                   'mmseg_dfss.models.onnx_export.config_test_shape)')
    p.add_argument('--repeats', type=int, default=5, help='timed runs per setting (median)')
    p.add_argument('--int8', metavar='SPEC', help='add the INT8 student, calibrated on SPEC '
                   '(a folder of images or ads:CONFIG, as tools/quantize_onnx.py)')
    p.add_argument('--int8-num', type=int, default=200, help='INT8 calibration images')
    p.add_argument('--student-checkpoint', help='trained student weights (student.pth)')
    p.add_argument('--teacher-checkpoint', help='trained teacher weights')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='overrides of an --int8 ads:CONFIG (cache_dir, data_root, ...)')
    p.add_argument('--worker', choices=['pytorch', 'onnxruntime'], help=argparse.SUPPRESS)
    p.add_argument('--role', choices=ROLES, help=argparse.SUPPRESS)
    p.add_argument('--onnx', help=argparse.SUPPRESS)
    args = p.parse_args()
    import mmseg_dfss  # noqa: F401
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    if args.worker:
        return worker(args)
    from mmseg_dfss.models.complexity import segmentor_complexity
    from mmseg_dfss.models.onnx_export import config_test_shape, export_onnx
    if args.shape is None:
        args.shape = list(config_test_shape(role_config(args.config, 'student')[0]))
    shape = tuple(args.shape)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for role in ROLES:
            wrapper, segmentor, _ = build(args.config, role, checkpoint_of(args, role))
            params, _, flops = segmentor_complexity(segmentor, shape)
            onnx_file = osp.join(tmp, f'{role}.onnx')
            export_onnx(wrapper, onnx_file, shape)
            del wrapper, segmentor
            rows[role] = dict(params=params, flops=flops, onnx_mib=osp.getsize(onnx_file) / 2**20)
            for runtime in ('pytorch', 'onnxruntime'):
                rows[role][runtime] = run_worker(args, role, runtime, onnx_file)
                print(f'{role} {runtime}: {rows[role][runtime]}', flush=True)
        if args.int8:
            from mmengine.registry import init_default_scope
            init_default_scope('mmseg')
            rows['int8'] = int8_rows(args, shape, osp.join(tmp, 'student.onnx'),
                                     osp.join(tmp, 'teacher.onnx'), tmp)
    t, s = rows['teacher'], rows['student']
    threads = t['pytorch']['threads']
    weights = ('trained weights' if args.student_checkpoint and args.teacher_checkpoint
               else 'random weights')
    print(f'\n{args.config} at 1x3x{shape[0]}x{shape[1]} on {args.device} ({weights}, '
          f'median of {args.repeats}, batch 1; CPU: {cpu_name()})\n')
    print('| | teacher | student | teacher / student |\n|---|---|---|---|')
    print(f'| parameters | {t["params"] / 1e6:.2f} M | {s["params"] / 1e6:.2f} M | '
          f'{fmt_ratio(t["params"], s["params"])} |')
    print(f'| FLOPs | {t["flops"] / 1e9:.3g} G | {s["flops"] / 1e9:.3g} G | '
          f'{fmt_ratio(t["flops"], s["flops"])} |')
    print(f'| ONNX file | {t["onnx_mib"]:.1f} MiB | {s["onnx_mib"]:.1f} MiB | '
          f'{fmt_ratio(t["onnx_mib"], s["onnx_mib"])} |')
    for runtime in ('pytorch', 'onnxruntime'):
        tr, sr = t[runtime], s[runtime]
        if 'skipped' in tr or 'skipped' in sr:
            print(f'| {runtime} | {tr.get("skipped", "")} | {sr.get("skipped", "")} | |')
            continue
        for i, lat in enumerate(tr['latency_s']):
            name = f'{runtime} latency, {threads[i]} thread{"s" if threads[i] > 1 else ""}'
            print(f'| {name} | {fmt_ms(lat)} | {fmt_ms(sr["latency_s"][i])} | '
                  f'{fmt_ratio(lat, sr["latency_s"][i])} |')
        print(f'| {runtime} peak memory | {tr["peak_mib"]:.0f} MiB | {sr["peak_mib"]:.0f} MiB | '
              f'{fmt_ratio(tr["peak_mib"], sr["peak_mib"])} |')
    if 'int8' in rows:
        q, qr = rows['int8'], rows['int8']['onnxruntime']
        print(f'\nThe student in INT8 (onnxruntime static quantization, QDQ; {args.int8_num} '
              f'calibration images of {args.int8}; agreement over the pixels of {q["check"]} '
              'check images never used to calibrate)\n')
        print('| | student FP32 | student INT8 | FP32 / INT8 |\n|---|---|---|---|')
        print(f'| ONNX file | {s["onnx_mib"]:.2f} MiB | {q["onnx_mib"]:.2f} MiB | '
              f'{fmt_ratio(s["onnx_mib"], q["onnx_mib"])} |')
        for i, lat in enumerate(s['onnxruntime']['latency_s']):
            name = f'onnxruntime latency, {threads[i]} thread{"s" if threads[i] > 1 else ""}'
            print(f'| {name} | {fmt_ms(lat)} | {fmt_ms(qr["latency_s"][i])} | '
                  f'{fmt_ratio(lat, qr["latency_s"][i])} |')
        sp = s['onnxruntime']['peak_mib']
        print(f'| onnxruntime peak memory | {sp:.0f} MiB | {qr["peak_mib"]:.0f} MiB | '
              f'{fmt_ratio(sp, qr["peak_mib"])} |')
        print(f'| argmax agreement with the FP32 student | 100% | '
              f'{q["fp32_agreement"] * 100:.2f}% | |')
        if 'teacher_agreement' in q:
            print(f'| argmax agreement with the teacher | '
                  f'{q["student_teacher_agreement"] * 100:.2f}% | '
                  f'{q["teacher_agreement"] * 100:.2f}% | |')


if __name__ == '__main__':
    main()
