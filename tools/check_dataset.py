"""Validate the datasets of a config on disk before training on them.

    python tools/check_dataset.py configs/_base_/datasets/nyuv2.py --data-root data/nyuv2
    python tools/check_dataset.py configs/_base_/datasets/camvid.py --splits test \\
        --cfg-options test_dataloader.dataset.data_root=/data/camvid
    python tools/check_dataset.py configs/_base_/datasets/coco_pool.py --key coco_pool

For each dataloader's dataset (dataset wrappers such as ADSDataset are opened to
the dataset inside, so no teacher runs): builds it (missing folders, split files
and unpaired files fail here), then reads every sample: the image exists and
decodes its header, the label exists, is one channel, has the image's size and,
after the dataset's own label mapping (MMSeg's LoadAnnotations: reduce_zero_label,
label_map), holds only class ids 0..N-1 and the ignore index. Prints the counts,
image sizes and the class histogram; every problem names its file. Exits 1 when
anything is wrong.
"""
import argparse
import copy
import sys
from collections import Counter

import numpy as np

SPLIT_KEYS = {'train': 'train_dataloader', 'val': 'val_dataloader', 'test': 'test_dataloader'}
# the published sizes, to flag a partial copy (a note, not an error)
OFFICIAL_COUNTS = {('NYUv2Dataset', 'train'): 795, ('NYUv2Dataset', 'test'): 654,
                   ('CamVidDataset', 'train'): 367, ('CamVidDataset', 'val'): 101,
                   ('CamVidDataset', 'test'): 233}


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('--splits', nargs='+', choices=sorted(SPLIT_KEYS),
                   default=['train', 'val', 'test'], help='dataloaders to check')
    p.add_argument('--key', help='check only the dataset config at this dotted key '
                   '(e.g. coco_pool) instead of the dataloaders')
    p.add_argument('--data-root', help='replaces data_root of every dataset checked')
    p.add_argument('--max-errors', type=int, default=20,
                   help='problems printed per dataset (all are counted)')
    p.add_argument('--no-progress', action='store_true')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return p.parse_args(argv)


def inner_datasets(cfg):
    """The datasets that hold files: wrappers (``dataset=``) are opened and
    concatenations (``datasets=``) listed."""
    if 'dataset' in cfg and isinstance(cfg['dataset'], dict):
        return inner_datasets(cfg['dataset'])
    if isinstance(cfg.get('datasets'), (list, tuple)):
        return [d for sub in cfg['datasets'] for d in inner_datasets(sub)]
    return [cfg]


class Report:
    """Problems and statistics of one dataset."""

    def __init__(self, name, max_errors):
        self.name = name
        self.max_errors = max_errors
        self.problems = Counter()
        self.shown = []
        self.sizes = Counter()
        self.histogram = np.zeros(256, np.int64)
        self.num_samples = self.num_labels = 0

    def problem(self, kind, message):
        self.problems[kind] += 1
        if len(self.shown) < self.max_errors:
            self.shown.append(message)


def check_sample(info, report, load_annotations, num_classes, ignore_index):
    import mmcv
    from mmengine import fileio
    from PIL import Image
    img_path = info['img_path']
    try:
        with Image.open(img_path) as im:
            img_size = im.size[::-1]
    except FileNotFoundError:
        report.problem('missing image', f'missing image: {img_path}')
        return
    except Exception as e:
        report.problem('unreadable image', f'unreadable image: {img_path} ({e})')
        return
    report.sizes[img_size] += 1
    seg_path = info.get('seg_map_path')
    if not seg_path:
        return
    report.num_labels += 1
    try:
        raw = mmcv.imfrombytes(fileio.get(seg_path), flag='unchanged', backend='pillow')
    except FileNotFoundError:
        report.problem('missing label', f'missing label: {seg_path} (image {img_path})')
        return
    except Exception as e:
        report.problem('unreadable label', f'unreadable label: {seg_path} ({e})')
        return
    if raw is None:
        report.problem('unreadable label', f'unreadable label: {seg_path}')
        return
    if raw.ndim == 3 and raw.shape[2] > 1:
        report.problem('label not single-channel',
                       f'label has {raw.shape[2]} channels, expected a single-channel map of '
                       f'class ids (a colour label?): {seg_path}')
        return
    raw = raw.reshape(raw.shape[:2])
    if raw.shape != img_size:
        report.problem('size mismatch', f'label {raw.shape[1]}x{raw.shape[0]} (WxH) but image '
                       f'{img_size[1]}x{img_size[0]}: {seg_path} vs {img_path}')
    if raw.max() > 255 or raw.min() < 0:
        report.problem('label value out of range',
                       f'label values {raw.min()}..{raw.max()} do not fit 8 bits: {seg_path}')
        return
    results = load_annotations(
        dict(seg_map_path=seg_path, reduce_zero_label=info.get('reduce_zero_label', False),
             label_map=info.get('label_map'), seg_fields=[]))
    seg = results['gt_seg_map']
    counts = np.bincount(seg.ravel(), minlength=256)
    bad = [v for v in np.flatnonzero(counts) if v >= num_classes and v != ignore_index]
    if bad:
        raw_bad = sorted(set(np.unique(raw[np.isin(seg, bad)]).tolist()))
        report.problem('label value out of range',
                       f'label values {raw_bad} (file values) are no class of 0..'
                       f'{num_classes - 1} nor ignored ({ignore_index}) after the dataset\'s '
                       f'mapping: {seg_path}')
    report.histogram += counts


def check_dataset(dataset, name, max_errors, progress=True):
    from mmseg.registry import TRANSFORMS
    from tqdm import tqdm
    report = Report(name, max_errors)
    classes = dataset.metainfo.get('classes') or ()
    ignore_index = getattr(dataset, 'ignore_index', 255)
    # MMSeg's own loader, so the check sees the labels training sees
    load_annotations = TRANSFORMS.build(dict(type='LoadAnnotations'))
    for i in tqdm(range(len(dataset)), desc=name, disable=not progress, file=sys.stderr):
        info = dataset.get_data_info(i)
        report.num_samples += 1
        check_sample(info, report, load_annotations, len(classes), ignore_index)
    return report, classes, ignore_index


def print_report(report, classes, ignore_index, official=None, details=''):
    print(f'== {report.name}')
    if details:
        print(details)
    line = f'samples: {report.num_samples}, labels: {report.num_labels}'
    if official is not None and official != report.num_samples:
        line += f' (note: the official split has {official})'
    print(line)
    sizes = ', '.join(f'{w}x{h}: {n}' for (h, w), n in report.sizes.most_common(5))
    more = len(report.sizes) - 5
    print(f'image sizes (WxH): {sizes}' + (f' and {more} more' if more > 0 else ''))
    if report.num_labels:
        total = max(int(report.histogram.sum()), 1)
        print(f'{"id":>4} {"class":<16} {"pixels":>14} {"%":>7}')
        for c, name in enumerate(classes):
            n = int(report.histogram[c])
            print(f'{c:>4} {str(name):<16} {n:>14} {100 * n / total:>7.2f}')
        n = int(report.histogram[ignore_index])
        print(f'{ignore_index:>4} {"(ignored)":<16} {n:>14} {100 * n / total:>7.2f}')
    if report.problems:
        print(f'PROBLEMS ({sum(report.problems.values())}): '
              + ', '.join(f'{k}: {v}' for k, v in sorted(report.problems.items())))
        for message in report.shown:
            print(f'  {message}')
        hidden = sum(report.problems.values()) - len(report.shown)
        if hidden > 0:
            print(f'  ... and {hidden} more')
    else:
        print('OK')


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmseg_dfss  # noqa: F401  (registers the datasets)
    from mmseg.registry import DATASETS

    from mmseg_dfss.utils.mmseg_tools import check_config_argument
    check_config_argument([args.config])  # an mmseg:: base the installed MMSeg lacks
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    checks = []  # [splits, dataset cfg]; a dataset shared by splits is checked once
    if args.key:
        node = cfg
        for part in args.key.split('.'):
            node = node.get(part) if hasattr(node, 'get') else None
        if not isinstance(node, dict) or 'type' not in node:
            raise SystemExit(f'error: {args.config}: {args.key!r} is not a dataset config')
        sources = [(args.key, node)]
    else:
        sources = [(split, cfg[SPLIT_KEYS[split]]['dataset']) for split in args.splits
                   if cfg.get(SPLIT_KEYS[split])]
    for split, top in sources:
        for ds_cfg in inner_datasets(top):
            ds_cfg = copy.deepcopy(dict(ds_cfg))
            ds_cfg['pipeline'] = []
            if args.data_root:
                ds_cfg['data_root'] = args.data_root
            same = next((c for c in checks if c[1] == ds_cfg), None)
            if same:
                same[0].append(split)
            else:
                checks.append([[split], ds_cfg])
    failed = False
    for splits, ds_cfg in checks:
        name = f'{"/".join(splits)}: {ds_cfg.get("type")}'
        try:
            dataset = DATASETS.build(ds_cfg)
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
            print(f'== {name}\nPROBLEM: cannot build the dataset: {e}')
            failed = True
            continue
        report, classes, ignore_index = check_dataset(dataset, name, args.max_errors,
                                                      progress=not args.no_progress)
        official = OFFICIAL_COUNTS.get((ds_cfg.get('type'), ds_cfg.get('split')))
        details = f'data_root: {dataset.data_root}'
        if getattr(dataset, 'layout', None):
            details += f', layout: {dataset.layout}'
        print_report(report, classes, ignore_index, official, details)
        failed |= bool(report.problems)
    if not checks:
        raise SystemExit(f'error: {args.config} has no dataloader among {args.splits} '
                         '(for a pool config, name the dataset with --key)')
    if failed:
        print('check_dataset: problems found (see above)')
        return 1
    print('check_dataset: all datasets OK')
    return 0


if __name__ == '__main__':
    sys.exit(main())
