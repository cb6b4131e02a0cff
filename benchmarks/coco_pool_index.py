"""Building a COCO-size pool: time and peak RSS with and without the pool index.

    git worktree add /tmp/base <commit before the index>   # optional: the old code
    OMP_NUM_THREADS=1 python benchmarks/coco_pool_index.py [--num-images 118287]
        [--anns-per-image 7.3] [--baseline-root /tmp/base]

Generates a COCO-format annotation file like instances_train2017.json (118,287
images of COCO's common sizes, ~7.3 instances per image with polygon masks,
~450 MB; no image files: building the pool opens none), then builds
``COCOPoolDataset`` over it in fresh processes and prints each one's wall time
and peak RSS:

- ``before``: the code at ``--baseline-root`` (parses the file with
  pycocotools in every process, every run), when given;
- ``no index``: this code with ``index_dir=None`` (parses every time);
- ``index, first build``: this code, building the index (rank 0, once);
- ``index, reused``: this code, reading the index (every later run, and the
  other ranks of a distributed run).
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

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SIZES = [(480, 640)] * 40 + [(640, 480)] * 20 + [(427, 640)] * 15 + [(h, 640) for h in range(
    360, 640, 12)] + [(640, w) for w in range(360, 640, 25)]


def write_annotations(path, num_images, anns_per_image, seed=0):
    """Writes the file piece by piece (the generator itself stays small)."""
    rng = np.random.default_rng(seed)
    sizes = [SIZES[k] for k in rng.integers(0, len(SIZES), num_images)]
    counts = rng.poisson(anns_per_image, num_images)
    cats = [dict(id=i + 1, name=f'class{i + 1}', supercategory='thing') for i in range(80)]
    ann_id = 0
    with open(path, 'w') as f:
        f.write('{"info": {"description": "generated, COCO-like"}, "images": [')
        f.write(','.join(json.dumps(dict(id=int(k + 1), file_name=f'{k + 1:012d}.jpg',
                                         height=h, width=w, license=1))
                         for k, (h, w) in enumerate(sizes)))
        f.write('], "annotations": [')
        first = True
        for k in range(num_images):
            h, w = sizes[k]
            for _ in range(counts[k]):
                ann_id += 1
                x, y = rng.uniform(0, w - 40), rng.uniform(0, h - 40)
                poly = np.round(np.stack([x + rng.uniform(0, 40, 24), y + rng.uniform(0, 40, 24)],
                                         1).ravel(), 2).tolist()
                ann = dict(id=ann_id, image_id=k + 1, category_id=int(rng.integers(1, 81)),
                           iscrowd=int(rng.random() < 0.01), segmentation=[poly],
                           area=float(rng.uniform(100, 1600)),
                           bbox=[round(x, 2), round(y, 2), 40.0, 40.0])
                f.write(('' if first else ',') + json.dumps(ann))
                first = False
        f.write('], "categories": ' + json.dumps(cats) + '}')
    return ann_id


def child(root, ann, index_dir):
    """Builds the pool in this fresh process; prints seconds and peak RSS."""
    from mmseg.utils import register_all_modules

    from mmseg_dfss.datasets import COCOPoolDataset
    register_all_modules(init_default_scope=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kw = {} if index_dir == '-' else dict(index_dir=None if index_dir == 'none' else index_dir)
    t0 = time.perf_counter()
    ds = COCOPoolDataset(data_root=root, ann_file=ann, data_prefix=dict(img_path='train2017'),
                         pipeline=[], **kw)
    seconds = time.perf_counter() - t0
    last = ds.get_data_info(len(ds) - 1)
    print(json.dumps(dict(n=len(ds), seconds=seconds, rss_import_mib=rss0,
                          rss_peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          last=osp.basename(last['img_path']))))


def run(code_root, root, ann, index_dir):
    env = dict(os.environ, PYTHONPATH=code_root)
    proc = subprocess.run([sys.executable, osp.abspath(__file__), '--child', root, ann,
                           index_dir], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--num-images', type=int, default=118287)
    p.add_argument('--anns-per-image', type=float, default=7.3)
    p.add_argument('--baseline-root', help='a checkout of the code before the index')
    p.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ann = osp.join(tmp, 'annotations', 'instances_train2017.json')
        os.makedirs(osp.dirname(ann))
        t0 = time.perf_counter()
        num_anns = write_annotations(ann, args.num_images, args.anns_per_image)
        print(f'generated {ann}: {args.num_images} images, {num_anns} annotations, '
              f'{osp.getsize(ann) / 2**20:.0f} MiB in {time.perf_counter() - t0:.0f} s')
        rows = []
        if args.baseline_root:
            rows.append(('before (parse every time)', run(args.baseline_root, tmp, ann, '-')))
        index = osp.join(tmp, 'index')
        rows.append(('no index (index_dir=None)', run(REPO, tmp, ann, 'none')))
        rows.append(('index, first build', run(REPO, tmp, ann, index)))
        rows.append(('index, reused', run(REPO, tmp, ann, index)))
        size = sum(osp.getsize(osp.join(index, f)) for f in os.listdir(index))
        print(f'index file: {size / 2**20:.1f} MiB')
    ref = rows[0][1]
    for name, r in rows:
        assert (r['n'], r['last']) == (ref['n'], ref['last']), (name, r)
        print(f'{name:28s} {r["seconds"]:7.2f} s  peak RSS {r["rss_peak_mib"]:7.0f} MiB '
              f'(imports alone {r["rss_import_mib"]:.0f} MiB)  -> {r["n"]} images')
    reused = rows[-1][1]
    above = ((reused['rss_peak_mib'] - reused['rss_import_mib']) /
             (ref['rss_peak_mib'] - ref['rss_import_mib']))
    print(f'reused index vs {rows[0][0]}: time {reused["seconds"] / ref["seconds"]:.4f}x, '
          f'peak RSS {reused["rss_peak_mib"] / ref["rss_peak_mib"]:.3f}x, RSS above imports '
          f'{above:.4f}x')


if __name__ == '__main__':
    main()
