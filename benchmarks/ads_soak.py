"""Soak test of ADS scoring: thousands of generated pool images with a sprinkling of
bad files (zero-byte, truncated PNG, text named .png, random bytes), scored through
the cache. Prints the resident memory over the run (it must stay flat) and checks
that every bad file is counted as unreadable and none is selected.

    OMP_NUM_THREADS=1 python benchmarks/ads_soak.py --pool 3000 --size 64 --bad-every 100

Not a test: it takes minutes. Exits non-zero when a bad file is not counted, a good
one is, or memory grows by more than --max-growth-mb after the first quarter.
"""
import argparse
import os
import os.path as osp
import sys
import tempfile
import threading
import time

import numpy as np
import torch
from mmengine.logging import MMLogger
from mmseg.utils import register_all_modules

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import mmseg_dfss  # noqa: E402,F401
from mmseg_dfss.core import build_frozen_segmentor  # noqa: E402
from mmseg_dfss.datasets import ADSDataset  # noqa: E402
from mmseg_dfss.datasets.synthetic import generate_synthetic  # noqa: E402

TEACHER = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                   'configs/synthetic/deeplabv3_r18-tiny_synthetic.py')
BAD_KINDS = ('zero_byte', 'truncated_png', 'text_as_png', 'random_bytes')


def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def write_bad_files(pool_dir, every, rng):
    """Puts one bad file after every ``every``-th good image (sorted order), cycling
    through the kinds; returns {path: kind}."""
    good = sorted(osp.join(d, f) for d, _, fs in os.walk(pool_dir) for f in fs
                  if f.endswith('.png'))
    bad = {}
    for k, src in enumerate(good[::every]):
        kind = BAD_KINDS[k % len(BAD_KINDS)]
        path = src[:-4] + f'_bad_{kind}.png'
        if kind == 'zero_byte':
            data = b''
        elif kind == 'truncated_png':
            with open(src, 'rb') as f:
                whole = f.read()
            data = whole[:len(whole) // 2]
        elif kind == 'text_as_png':
            data = b'this is a text file, not an image\n' * 4
        else:
            data = rng.integers(0, 256, 512, dtype=np.uint8).tobytes()
        with open(path, 'wb') as f:
            f.write(data)
        bad[path] = kind
    return bad


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--pool', type=int, default=3000, help='generated pool images')
    p.add_argument('--size', type=int, default=64, help='image side (px)')
    p.add_argument('--bad-every', type=int, default=100, help='one bad file per N images')
    p.add_argument('--eps', type=int, default=1000)
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--workers', type=int, default=0)
    p.add_argument('--work-dir', default=None, help='default: a temporary folder')
    p.add_argument('--max-growth-mb', type=float, default=50.0)
    args = p.parse_args()

    work = args.work_dir or tempfile.mkdtemp(prefix='ads_soak_')
    t0 = time.time()
    generate_synthetic(work, seed=0, num_train=1, num_test=1, pool_size=args.pool,
                       size=args.size, progress=False)
    pool_dir = osp.join(work, 'pool')
    bad = write_bad_files(pool_dir, args.bad_every, np.random.default_rng(0))
    register_all_modules(init_default_scope=True)
    torch.manual_seed(0)
    ckpt = osp.join(work, 'teacher.pth')
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # not the per-parameter init report of a random teacher
    torch.save({'state_dict': build_frozen_segmentor(
        TEACHER, allow_random_teacher=True).state_dict()}, ckpt)
    logger.setLevel(level)
    print(f'pool: {args.pool} generated images ({args.size} px) + {len(bad)} bad files '
          f'under {pool_dir}; generated in {time.time() - t0:.1f} s')

    samples, stop = [], threading.Event()
    start = time.time()

    def sample():
        while not stop.is_set():
            samples.append((time.time() - start, rss_mb()))
            stop.wait(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    ds = ADSDataset(
        dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=pool_dir),
                     pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]),
        teacher=TEACHER, teacher_checkpoint=ckpt, num_samples=args.eps,
        score_pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')],
        score_batch_size=args.batch_size, score_num_workers=args.workers,
        cache_dir=osp.join(work, 'cache'))
    seconds = time.time() - start
    stop.set()
    thread.join()

    res = ds.result
    n = len(res.paths)
    counted = {res.paths[i] for i in res.errors}
    missed = sorted(set(bad) - counted)
    wrongly = sorted(counted - set(bad))
    picked_bad = [res.paths[i] for i in ds.selected if res.paths[i] in bad]
    by_kind = {k: sum(1 for p in counted & set(bad) if bad[p] == k) for k in BAD_KINDS}

    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    quarter = rss[t >= 0.25 * seconds]
    growth = float(quarter.max() - quarter[0]) if quarter.size else float('nan')
    print(f'scored {n} files in {seconds:.1f} s ({n / seconds:.1f} files/s), '
          f'batch {args.batch_size}, {args.workers} loader workers')
    print('RSS over the run (MB): ' + ', '.join(
        f'{int(100 * q)}%: {np.interp(q * seconds, t, rss):.0f}'
        for q in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)))
    print(f'peak RSS {rss.max():.0f} MB; growth after the first quarter {growth:.1f} MB '
          f'(limit {args.max_growth_mb:.0f} MB); {len(samples)} samples')
    print(f'bad files: {len(bad)} written, {len(counted & set(bad))} counted unreadable '
          f'({", ".join(f"{k}={v}" for k, v in by_kind.items())}); missed {len(missed)}; '
          f'good files counted unreadable {len(wrongly)}; bad files selected {len(picked_bad)}')
    print(f'kept {len(ds.selected)} of {n} (eps={args.eps}); non-finite scores '
          f'{len(res.nonfinite)}')
    ok = not missed and not wrongly and not picked_bad and growth <= args.max_growth_mb
    print('SOAK ' + ('PASSED' if ok else 'FAILED'))
    for path in missed[:10]:
        print(f'  not counted: {path}')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
