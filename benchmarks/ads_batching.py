"""ADS batching on a mixed-size pool: are the batches as full as the shapes allow,
and is a mixed pool scored as fast as a one-shape pool of as many images?

    OMP_NUM_THREADS=1 python benchmarks/ads_batching.py [--common 960] [--rare 320]
        [--per-rare 1] [--batch-size 16] [--num-workers 0] [--rounds 2] [--device cpu|cuda]

The pool is generated with a COCO-like size mix: JPEGs of 480x640, 640x480 and
427x640 (about 75% of the images, as in COCO train2017), plus ``--per-rare``
images of each of ``--rare`` other sizes, each giving another input shape after
the score pipeline's ``ResizeShortestEdge(256)`` (320 rare shapes by default). A second pool has
as many images, all 480x640. Both are scored by ADS with the same teacher
(``--teacher``, random init, default the repo's tiny synthetic DeepLabV3-R18).

Printed, from one run:
- mean batch / batch size, and that over what the shape counts allow (every
  batch but the last of each shape full; target >= 0.95);
- the same for the policy before batch planning (4-batch window of open
  shapes, in pool order), simulated on the same pool;
- img/s of the mixed pool / img/s of the one-shape pool (target >= 0.9), over
  the loading + scoring loop (teacher build, fingerprint and header reads are
  timed apart), and the same per pixel. The two pools are scored in
  ``--rounds`` alternating rounds, so a load change on a shared machine hits
  both alike; the totals give the ratio.
"""
import argparse
import copy
import math
import os
import os.path as osp
import sys
import tempfile
import time
from collections import Counter

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
TEACHER = osp.join(REPO, 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py')
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='ResizeShortestEdge', scale=256,
                                                 max_size=4096), dict(type='PackSegInputs')]
COMMON = [(480, 640), (640, 480), (427, 640)]


def rare_sizes(n, predict, seed=0):
    """``n`` source sizes (h, w) whose score-input shapes differ from each other
    and from the common ones (COCO's long tail: one side 640, the other 360-640)."""
    rng = np.random.default_rng(seed)
    taken = {predict(s) for s in COMMON}
    out = []
    cands = [(h, 640) for h in range(360, 641)] + [(640, w) for w in range(360, 640)]
    for k in rng.permutation(len(cands)):
        shape = predict(cands[k])
        if shape not in taken:
            taken.add(shape)
            out.append(cands[k])
        if len(out) == n:
            return out
    raise ValueError(f'only {len(out)} distinct rare shapes available, {n} asked')


def write_pool(folder, sizes, seed=0):
    import cv2
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sizes))  # the pool (file name) order mixes the shapes
    base = cv2.resize(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (640, 640))
    for k, j in enumerate(order):
        h, w = sizes[j]
        img = np.roll(base, k, axis=1)[:h, :w]
        cv2.imwrite(osp.join(folder, f'{k:06d}.jpg'), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def window_policy(shapes, batch_size):
    """Batch sizes of the policy before planning: shape buckets in pool order,
    a full bucket goes, and past 4 batches buffered the largest bucket goes."""
    buckets, buffered, sizes = {}, 0, []
    for s in shapes:
        buckets.setdefault(s, []).append(s)
        buffered += 1
        if len(buckets[s]) >= batch_size:
            sizes.append(len(buckets.pop(s)))
            buffered -= sizes[-1]
        elif buffered > 4 * batch_size:
            k = max(buckets, key=lambda k: len(buckets[k]))
            sizes.append(len(buckets.pop(k)))
            buffered -= sizes[-1]
    sizes += [len(b) for b in buckets.values()]
    return sizes


def random_teacher(cfg, path):
    """A checkpoint of the teacher with random weights (built directly, so the
    benchmark needs no opt-in for a teacher without weights)."""
    import torch
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def score(folder, args, cfg):
    from mmseg_dfss.core import PoolScorer
    from mmseg_dfss.datasets import UnlabeledImageDataset
    pool = UnlabeledImageDataset(data_prefix=dict(img_path=folder), pipeline=[])
    scorer = PoolScorer(cfg, args.ckpt, 'ads', score_pipeline=PIPELINE, batch_size=args.batch_size,
                        num_workers=args.num_workers, cache_dir=None, progress=False,
                        device=args.device, max_unreadable=0.0)
    timing = {}
    real_run = PoolScorer._run

    def timed_run(self, *a):
        t0 = time.perf_counter()
        try:
            return real_run(self, *a)
        finally:
            timing['loop'] = time.perf_counter() - t0

    PoolScorer._run = timed_run
    try:
        t0 = time.perf_counter()
        res = scorer.score(pool)
        timing['total'] = time.perf_counter() - t0
    finally:
        PoolScorer._run = real_run
    assert np.isfinite(res.scores).all() and not res.errors
    pixels = sum(math.prod(s[1:]) * k for s, k in res.batches)
    return res, timing, pixels


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--common', type=int, default=960, help='images of the 3 common sizes')
    p.add_argument('--rare', type=int, default=320, help='rare input shapes')
    p.add_argument('--per-rare', type=int, default=1, help='images of each rare shape')
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--num-workers', type=int, default=0)
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--device', default='cpu')
    p.add_argument('--teacher', default=TEACHER)
    args = p.parse_args()

    import torch
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    from mmseg_dfss.core import load_model_config
    from mmseg_dfss.core.batch_plan import ShapePredictor
    init_default_scope('mmseg')
    MMLogger.get_instance('mmengine', log_level='ERROR')
    cfg = load_model_config(args.teacher)
    predict = ShapePredictor(PIPELINE)
    rare = rare_sizes(args.rare, lambda hw: predict(hw))
    sizes = [COMMON[k % 3] for k in range(args.common)] + rare * args.per_rare
    n, bs = len(sizes), args.batch_size
    counts = Counter(predict(s) for s in sizes)
    allowed = n / sum(math.ceil(c / bs) for c in counts.values())
    top3 = sum(c for _, c in counts.most_common(3)) / n
    print(f'torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}; '
          f'teacher {osp.relpath(args.teacher, REPO)} (random init); batch {bs}, '
          f'{args.num_workers} loader workers')
    print(f'pool: {n} JPEGs, {len(counts)} input shapes after ResizeShortestEdge(256); '
          f'3 common shapes hold {top3:.0%}')
    with tempfile.TemporaryDirectory() as tmp:
        args.ckpt = random_teacher(cfg, osp.join(tmp, 'teacher.pth'))
        mixed = write_pool(osp.join(tmp, 'mixed'), sizes)
        single = write_pool(osp.join(tmp, 'single'), [COMMON[0]] * n, seed=1)
        score(write_pool(osp.join(tmp, 'warm'), COMMON * 2, seed=2), args, cfg)  # warm-up
        t_m, t_s = dict(loop=0.0, total=0.0), dict(loop=0.0, total=0.0)
        for r in range(args.rounds):
            res_m, tm, px_m = score(mixed, args, cfg)
            res_s, ts, px_s = score(single, args, cfg)
            for k in t_m:
                t_m[k] += tm[k] / args.rounds
                t_s[k] += ts[k] / args.rounds
            print(f'[speed] round {r + 1}: mixed {n / tm["loop"]:.2f} img/s, one shape '
                  f'{n / ts["loop"]:.2f} img/s: ratio {ts["loop"] / tm["loop"]:.3f}')

    mean = n / len(res_m.batches)
    order = np.random.default_rng(0).permutation(n)  # write_pool's file order
    old = window_policy([predict(sizes[j]) for j in order], bs)
    print(f'[batches] mixed pool: {len(res_m.batches)} batches, mean {mean:.2f} of {bs} '
          f'= {mean / bs:.3f}; the shape counts allow {allowed:.2f} ({allowed / bs:.3f}): '
          f'ratio {mean / allowed:.3f} (target >= 0.95)')
    print(f'[batches] before planning (4-batch window, simulated, same pool order): '
          f'{len(old)} batches, mean {n / len(old):.2f} of {bs}: ratio '
          f'{(n / len(old)) / allowed:.3f} of what the shapes allow')
    ips_m, ips_s = n / t_m['loop'], n / t_s['loop']
    print(f'[speed] {args.rounds} rounds, loading + scoring loop: mixed {ips_m:.2f} img/s, '
          f'one shape {ips_s:.2f} img/s: ratio {ips_m / ips_s:.3f} (target >= 0.9); per pixel '
          f'{(px_m / t_m["loop"]) / (px_s / t_s["loop"]):.3f} (mixed images have '
          f'{px_m / px_s:.3f}x the pixels)')
    print(f'[speed] end to end (teacher build, fingerprint, header reads included): mixed '
          f'{t_m["total"]:.1f} s, one shape {t_s["total"]:.1f} s: img/s ratio '
          f'{t_s["total"] / t_m["total"]:.3f}')


if __name__ == '__main__':
    main()
