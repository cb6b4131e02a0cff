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


def build(dfss_config, role):
    import torch

    from mmseg_dfss.models.onnx_export import build_exportable
    torch.manual_seed(0)
    _, cfg = role_config(dfss_config, role)
    return build_exportable(cfg, None)


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
        wrapper = build(args.config, args.role)[0].to(args.device)
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


def run_worker(args, role, runtime, onnx_file):
    cmd = [sys.executable, osp.abspath(__file__), args.config, '--worker', runtime, '--role',
           role, '--shape', *map(str, args.shape), '--repeats', str(args.repeats), '--device',
           args.device, '--onnx', onnx_file]
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
    p.add_argument('--worker', choices=['pytorch', 'onnxruntime'], help=argparse.SUPPRESS)
    p.add_argument('--role', choices=ROLES, help=argparse.SUPPRESS)
    p.add_argument('--onnx', help=argparse.SUPPRESS)
    args = p.parse_args()
    import mmseg_dfss  # noqa: F401
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    if args.worker:
        return worker(args)
    from model_complexity import segmentor_complexity

    from mmseg_dfss.models.onnx_export import config_test_shape, export_onnx
    if args.shape is None:
        args.shape = list(config_test_shape(role_config(args.config, 'student')[0]))
    shape = tuple(args.shape)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for role in ROLES:
            wrapper, segmentor, _ = build(args.config, role)
            params, _, flops = segmentor_complexity(segmentor, shape)
            onnx_file = osp.join(tmp, f'{role}.onnx')
            export_onnx(wrapper, onnx_file, shape)
            del wrapper, segmentor
            rows[role] = dict(params=params, flops=flops, onnx_mib=osp.getsize(onnx_file) / 2**20)
            for runtime in ('pytorch', 'onnxruntime'):
                rows[role][runtime] = run_worker(args, role, runtime, onnx_file)
                print(f'{role} {runtime}: {rows[role][runtime]}', flush=True)
    t, s = rows['teacher'], rows['student']
    threads = t['pytorch']['threads']
    print(f'\n{args.config} at 1x3x{shape[0]}x{shape[1]} on {args.device} (random weights, '
          f'median of {args.repeats}, batch 1)\n')
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


if __name__ == '__main__':
    main()
