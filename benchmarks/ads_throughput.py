"""ADS scoring speed vs full MMSeg inference, and scoring memory vs pool size.

    OMP_NUM_THREADS=1 python benchmarks/ads_throughput.py [--num-images 16]
        [--batch-size 4] [--rounds 2] [--memory-pools 250 1000] [--memory-side 32]
        [--device cpu|cuda]

Teacher: MMSeg's DeepLabV3-R50-D8 (``mmseg::_base_/models/deeplabv3_r50-d8.py``,
pretrained=None, random init), on ``--device`` (CPU by default; ``cuda``/``cuda:N``
runs unchanged: both timings end with the results on the host, full inference
after a ``torch.cuda.synchronize``; one warm-up pass of each precedes the rounds).

1. Throughput: the same ``--num-images`` images (320x240, resized to short side
   256 by ADS's default score pipeline) are (a) scored by ADS (backbone BN layers,
   the forward stops after the last one) and (b) run through the teacher's full
   MMSeg inference (``test_step``: backbone, decode head, resize to the image),
   both loaded by the same DataLoader, in ``--rounds`` alternating rounds.
   Prints img/s of each and the ratio (target: ``TARGET_SPEEDUP``).
2. Memory: a pool of each size in ``--memory-pools`` is scored by ADS (cache on)
   in a fresh process; prints its peak RSS and the tracemalloc peak of Python
   objects. To keep a 4K-image run short on CPU these images are
   ``--memory-side`` px (no resize); memory should not grow with the pool. The
   default pools are 250 and 1000 images (the same 4x step as ``--memory-pools 1000
   4000``, whose 4000-image run alone took minutes on a 2-core CPU). On CUDA the
   child also prints its peak of allocated GPU memory.
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
TEACHER = 'mmseg::_base_/models/deeplabv3_r50-d8.py'
TARGET_SPEEDUP = 2.0  # ADS img/s over full-inference img/s (docs/benchmarks.md)


def teacher_cfg():
    from mmseg_dfss.core import load_model_config
    cfg = load_model_config(TEACHER)
    cfg.pretrained = None
    cfg.backbone.init_cfg = None
    return cfg


def write_images(folder, n, h, w, seed=0):
    import mmcv
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mmcv.imwrite(img, osp.join(folder, f'{i:05d}.png'))
    return folder


def pool_dataset(folder):
    from mmseg_dfss.datasets import UnlabeledImageDataset
    return UnlabeledImageDataset(data_prefix=dict(img_path=folder), pipeline=[])


def time_ads(cfg, pool, batch_size, device='cpu'):
    from mmseg_dfss.core import PoolScorer
    scorer = PoolScorer(cfg, None, 'ads', batch_size=batch_size, cache_dir=None,
                        progress=False, device=device, allow_random_teacher=True)
    t0 = time.perf_counter()
    result = scorer.score(pool)
    return len(pool) / (time.perf_counter() - t0), result


def time_full(cfg, pool, batch_size, device='cpu'):
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader

    from mmseg_dfss.core import build_frozen_segmentor
    from mmseg_dfss.core.pool_scorer import DEFAULT_SCORE_PIPELINE
    from mmseg_dfss.core.score_view import ScoreView
    t0 = time.perf_counter()
    model = build_frozen_segmentor(cfg, allow_random_teacher=True).to(device)
    view = ScoreView(pool, range(len(pool)), DEFAULT_SCORE_PIPELINE)
    loader = DataLoader(view, batch_size=batch_size, collate_fn=pseudo_collate)
    n = 0
    with torch.no_grad():
        for batch in loader:
            out = model.test_step(dict(inputs=batch['inputs'],
                                       data_samples=batch['data_samples']))
            n += len(out)
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)  # test_step returns before the GPU is done
    return n / (time.perf_counter() - t0)


def memory_child(folder, batch_size, cache_dir, device='cpu'):
    """Scores ``folder`` in this (fresh) process and prints its memory as JSON."""
    from mmengine.registry import init_default_scope

    from mmseg_dfss.core import PoolScorer
    init_default_scope('mmseg')
    pool = pool_dataset(folder)
    scorer = PoolScorer(teacher_cfg(), None, 'ads', batch_size=batch_size,
                        score_pipeline=[dict(type='LoadImageFromFile'),
                                        dict(type='PackSegInputs')],
                        cache_dir=cache_dir, progress=False, device=device,
                        allow_random_teacher=True)
    tracemalloc.start()
    t0 = time.perf_counter()
    result = scorer.score(pool)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    out = dict(n=len(pool), scored=int(np.isfinite(result.scores).sum()),
               seconds=seconds, py_peak_mib=peak / 2**20,
               rss_peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if torch.device(device).type == 'cuda':
        out['cuda_peak_mib'] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--num-images', type=int, default=16)
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--memory-pools', type=int, nargs='*', default=[250, 1000])
    p.add_argument('--memory-side', type=int, default=32)
    p.add_argument('--device', default='cpu', help="e.g. 'cuda' (no code change needed)")
    p.add_argument('--memory-child', nargs=3, metavar=('FOLDER', 'BATCH', 'CACHE'),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        folder, bs, cache = args.memory_child
        memory_child(folder, int(bs), cache, args.device)
        return

    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    MMLogger.get_instance('mmengine', log_level='ERROR')
    print(f'torch {torch.__version__}, threads {torch.get_num_threads()}, {args.device}; teacher '
          f'{TEACHER} (random init)')
    with tempfile.TemporaryDirectory() as tmp:
        cfg = teacher_cfg()
        pool = pool_dataset(write_images(osp.join(tmp, 'speed'), args.num_images, 240, 320))
        # warm-up: first-call costs (CUDA context and kernels, allocator) hit neither timing
        warm = pool_dataset(write_images(osp.join(tmp, 'warm'), 2, 240, 320))
        time_ads(cfg, warm, 2, args.device)
        time_full(cfg, warm, 2, args.device)
        # rounds alternate ADS and full inference, so load from other processes on a
        # shared machine hits both alike; the totals give the ratio
        ads_t = full_t = 0.0
        for r in range(args.rounds):
            ads_ips, res = time_ads(cfg, pool, args.batch_size, args.device)
            full_ips = time_full(cfg, pool, args.batch_size, args.device)
            assert np.isfinite(res.scores).all()
            ads_t += args.num_images / ads_ips
            full_t += args.num_images / full_ips
            print(f'[speed] round {r + 1}: ADS {ads_ips:.3f} img/s, full inference '
                  f'{full_ips:.3f} img/s, ratio {ads_ips / full_ips:.2f}x')
        n = args.num_images * args.rounds
        print(f'[speed] {args.num_images} images x {args.rounds} rounds, 240x320 -> 256x341, '
              f'batch {args.batch_size}: ADS {n / ads_t:.3f} img/s, full inference '
              f'{n / full_t:.3f} img/s, ratio {full_t / ads_t:.2f}x (target >= {TARGET_SPEEDUP})')

        mem = {}
        for n in args.memory_pools:
            folder = write_images(osp.join(tmp, f'pool{n}'), n, args.memory_side,
                                  args.memory_side, seed=n)
            proc = subprocess.run(
                [sys.executable, osp.abspath(__file__), '--memory-child', folder,
                 str(args.batch_size), osp.join(tmp, f'cache{n}'), '--device', args.device],
                capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
            if proc.returncode != 0:
                raise RuntimeError(f'memory run for {n} images failed:\n{proc.stderr[-3000:]}')
            mem[n] = json.loads(proc.stdout.strip().splitlines()[-1])
            m = mem[n]
            print(f'[memory] pool {n} images {args.memory_side}px: peak RSS '
                  f'{m["rss_peak_mib"]:.1f} MiB, Python peak {m["py_peak_mib"]:.2f} MiB, '
                  f'{m["scored"]} scored in {m["seconds"]:.1f} s'
                  + (f', CUDA peak {m["cuda_peak_mib"]:.1f} MiB' if 'cuda_peak_mib' in m else ''))
        if len(mem) >= 2:
            lo, hi = min(mem), max(mem)
            print(f'[memory] {hi} vs {lo} images: peak RSS ratio '
                  f'{mem[hi]["rss_peak_mib"] / mem[lo]["rss_peak_mib"]:.3f}, Python peak ratio '
                  f'{mem[hi]["py_peak_mib"] / mem[lo]["py_peak_mib"]:.3f} '
                  f'(pool {hi / lo:.0f}x larger; flat = ~1)')


if __name__ == '__main__':
    main()
