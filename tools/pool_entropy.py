"""Image information entropy of a pool (the paper's Table 5 and Eq. 6's R(D)).

    python tools/pool_entropy.py configs/_base_/datasets/coco_pool.py --data-root data/coco
    python tools/pool_entropy.py data/VOCdevkit/VOC2012/JPEGImages --out-png voc.png
    python tools/pool_entropy.py configs/_base_/datasets/nyuv2.py --key train_dataloader.dataset

For every image: the Shannon entropy (bits) of its 256-bin grey-level histogram,
H = -sum_k p_k log2 p_k, on the full-size image converted to grey (ITU-R 601
luma, OpenCV's). Images stream one at a time (``--workers`` processes), with a
progress bar; prints mean, median and (population) variance over the pool, and
one JSON line with the same. Unreadable images are counted, named and skipped.

SOURCE is an image folder (read recursively) or a config: the dataset at
``--key`` (dotted), by default ``train_dataloader.dataset`` with wrappers such
as ADSDataset opened to the pool inside (no teacher runs), else the one
top-level dataset dict of the file (e.g. ``coco_pool``).
"""
import argparse
import contextlib
import copy
import csv
import json
import os
import os.path as osp
import sys

from mmseg_dfss.core.atomic_file import atomic_write, save_figure
from mmseg_dfss.core.entropy import grey_entropy, iter_entropies, summarize_entropy  # noqa: F401


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('source', help='a config file or an image folder')
    p.add_argument('--key', help='dotted config key of the dataset, e.g. coco_pool')
    p.add_argument('--data-root', help='replaces the dataset\'s data_root')
    p.add_argument('--max-images', type=int, help='only the first N images of the pool')
    p.add_argument('--workers', type=int, default=1, help='reader processes')
    p.add_argument('--out-csv', help='per-image entropies (pool_index,img_path,entropy)')
    p.add_argument('--out-png', help='histogram of the entropies (needs matplotlib)')
    p.add_argument('--no-progress', action='store_true')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return p.parse_args(argv)


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split('.'):
        node = node.get(part) if hasattr(node, 'get') else None
    return node


def _unwrap(ds_cfg):
    while isinstance(ds_cfg.get('dataset'), dict):
        ds_cfg = ds_cfg['dataset']
    return ds_cfg


def dataset_cfg_from_config(cfg, key):
    """The dataset config to measure (see the module docstring)."""
    from mmseg.registry import DATASETS
    if key:
        found = _get(cfg, key)
        if not isinstance(found, dict) or 'type' not in found:
            raise KeyError(f'{cfg.filename}: {key!r} is not a dataset config')
        return _unwrap(found)
    loader_ds = _get(cfg, 'train_dataloader.dataset')
    if isinstance(loader_ds, dict):
        return _unwrap(loader_ds)
    candidates = [k for k, v in cfg.items()
                  if isinstance(v, dict) and isinstance(v.get('type'), str)
                  and DATASETS.get(v['type']) is not None]
    if len(candidates) != 1:
        raise KeyError(f'{cfg.filename}: found {len(candidates)} top-level dataset configs '
                       f'{candidates}; choose one with --key')
    return _unwrap(cfg[candidates[0]])


def build_pool(args):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmseg_dfss  # noqa: F401  (registers the datasets)
    from mmseg.registry import DATASETS

    if osp.isdir(args.source):
        ds_cfg = dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=args.source))
        scope = 'mmseg'
    else:
        from mmseg_dfss.utils.mmseg_tools import check_config_argument
        check_config_argument([args.source])  # an mmseg:: base the installed MMSeg lacks
        cfg = Config.fromfile(args.source)
        cfg.merge_from_dict(args.cfg_options)
        ds_cfg = copy.deepcopy(dict(dataset_cfg_from_config(cfg, args.key)))
        scope = cfg.get('default_scope', 'mmseg')
    init_default_scope(scope)
    ds_cfg['pipeline'] = []
    if args.data_root:
        ds_cfg['data_root'] = args.data_root
    return DATASETS.build(ds_cfg), ds_cfg['type']


def summarize(entropies):
    return summarize_entropy(entropies)


def save_histogram(entropies, stats, title, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(entropies, bins=64, range=(0, 8), color='tab:blue')
    ax.axvline(stats['mean'], color='tab:red', label=f'mean {stats["mean"]:.3f}')
    ax.axvline(stats['median'], color='tab:green', ls='--',
               label=f'median {stats["median"]:.3f}')
    ax.set_xlabel('grey-level entropy (bits)')
    ax.set_ylabel('images')
    ax.set_title(f'{title}: {stats["num_images"]} images, variance {stats["variance"]:.3f}')
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    try:
        pool, name = build_pool(args)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
        raise SystemExit(f'error: {e}')
    n = len(pool) if args.max_images is None else min(args.max_images, len(pool))
    paths = [pool.get_data_info(i)['img_path'] for i in range(n)]
    entropies, skipped = [], []
    for out in (args.out_csv, args.out_png):
        if out and osp.dirname(out):
            os.makedirs(osp.dirname(out), exist_ok=True)
    with contextlib.ExitStack() as stack:
        csv_file = (stack.enter_context(atomic_write(args.out_csv, newline=''))
                    if args.out_csv else None)
        rows = csv.writer(csv_file) if csv_file else None
        if rows:
            rows.writerow(['pool_index', 'img_path', 'entropy'])
        values = iter_entropies(paths, workers=args.workers, progress=not args.no_progress,
                                title=f'entropy of {n} images')
        for i, h in enumerate(values):
            path = paths[i]
            if h is None:
                skipped.append(path)
                continue
            entropies.append(h)
            if rows:
                rows.writerow([i, path, f'{h:.6f}'])
    if skipped:
        print(f'skipped {len(skipped)} unreadable images, e.g.: ' + ', '.join(skipped[:10]))
    if not entropies:
        raise SystemExit(f'error: no readable image among the {n} of {args.source}')
    stats = summarize(entropies)
    stats.update(skipped=len(skipped), dataset=name, source=args.source)
    print(f'{name} ({args.source}): {stats["num_images"]} images, grey-level entropy '
          f'mean {stats["mean"]:.3f}, median {stats["median"]:.3f}, '
          f'variance {stats["variance"]:.3f} bits')
    if args.out_png:
        save_histogram(entropies, stats, name, args.out_png)
        print(f'histogram: {args.out_png}')
    print(json.dumps(stats))
    return 0


if __name__ == '__main__':
    sys.exit(main())
