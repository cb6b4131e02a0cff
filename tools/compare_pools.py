"""Which open-world pool should DFSS get for this teacher? (paper Sec. 3.2, Eq. 5-6)

    python tools/compare_pools.py CONFIG --pools NAME=SPEC [NAME=SPEC ...]
        [--eps N] [--out DIR] [--teacher-checkpoint CKPT] [--original auto|none|SPEC]
        [--cache-dir DIR|none] [--workers N] [--no-progress] [--cfg-options k=v ...]

SPEC: an image folder (read recursively), a list file (one image path per line,
relative to the list's folder), a COCO annotation ``.json`` (images in
``<root>/<split>`` for ``<root>/annotations/instances_<split>.json``, or
``ANN.json:IMAGE_DIR``), or a dotted dataset key of CONFIG (e.g.
``train_dataloader.dataset.dataset``; wrappers such as ADSDataset are opened).

The teacher and the scoring settings (teacher, teacher_checkpoint, bn_layers,
score_pipeline, score_batch_size, cache_dir, num_samples = eps) come from
CONFIG's ADSDataset (``train_dataloader.dataset``), else its DataFreeDistiller
(``model``), else CONFIG is the teacher's own segmentor config. For every pool:
size, grey-level entropy mean/median/variance (Table 5, as
``tools/pool_entropy.py``), ADS distance quantiles p5/p25/median and the d at
which eps would be cut if the pool were used alone; then ADS over all pools
merged (how many of the eps kept images each pool gives) and one verdict per pool
against the two principles: relevance (d vs the best pool) and richness (entropy
vs the original domain: CONFIG's val/test dataset unless ``--original``), and the
pools to train on (``choose_pools``: what tools/compress.py trains on). Scores go through the score cache, so a rerun or a later DFSS run reuses them.

``--out DIR`` writes ``report.md``, ``summary.json``, ``scores.csv`` (one row per
pool image) and the figures ``distance_hist.png``, ``entropy_hist.png``,
``merge_mix.png``.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys



def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='a DFSS/ADS config (or the teacher\'s segmentor config)')
    p.add_argument('--pools', nargs='+', required=True, metavar='NAME=SPEC',
                   help='pools to compare: NAME=folder | list file | COCO .json | config key')
    p.add_argument('--eps', type=int, help='images ADS keeps (default: the config\'s '
                   'num_samples)')
    p.add_argument('--out', help='folder for report.md, summary.json, scores.csv and figures')
    p.add_argument('--teacher-checkpoint', help='replaces the config\'s teacher checkpoint')
    p.add_argument('--allow-random-teacher', action='store_true',
                   help='score with a random-weight teacher when no checkpoint is given '
                        '(tests and benchmarks only)')
    p.add_argument('--original', default='auto',
                   help='the original domain for the richness verdict: auto (the config\'s '
                   'val, else test dataset), none, or a SPEC like the pools\'')
    p.add_argument('--cache-dir', help='score cache folder (default: the config\'s '
                   'cache_dir); none disables it')
    p.add_argument('--workers', type=int, default=1, help='entropy reader processes')
    p.add_argument('--no-progress', action='store_true')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return p.parse_args(argv)


def _find_ads(ds):
    while isinstance(ds, dict):
        if ds.get('type') == 'ADSDataset':
            return ds
        ds = ds.get('dataset')
    return None


def teacher_settings(cfg):
    """The teacher and ADS scoring settings of CONFIG (see the module docstring)."""
    ads = _find_ads(cfg.get('train_dataloader', {}).get('dataset'))
    model = cfg.get('model')
    s = dict(bn_layers='backbone', score_pipeline=None, score_batch_size=8,
             score_num_workers=0, cache_dir='work_dirs/ads_cache', max_unreadable=0.05,
             score_io_retries=3, num_samples=cfg.get('num_samples'))
    if ads is not None:
        s.update(teacher=ads.get('teacher'), teacher_checkpoint=ads.get('teacher_checkpoint'),
                 source='train_dataloader.dataset (ADSDataset)')
        for key in ('bn_layers', 'score_pipeline', 'score_batch_size', 'score_num_workers',
                    'cache_dir', 'num_samples', 'max_unreadable', 'score_io_retries'):
            if key in ads:
                s[key] = ads[key]
    elif isinstance(model, dict) and model.get('type') == 'DataFreeDistiller':
        s.update(teacher=model.get('teacher'), teacher_checkpoint=model.get('teacher_checkpoint'),
                 source='model (DataFreeDistiller)')
    elif isinstance(model, dict):
        teacher = copy.deepcopy(dict(model))
        if 'data_preprocessor' not in teacher and 'data_preprocessor' in cfg:
            teacher['data_preprocessor'] = copy.deepcopy(dict(cfg.data_preprocessor))
        s.update(teacher=teacher, teacher_checkpoint=None, source='model (the config itself)')
    else:
        s['teacher'] = None
    if s['teacher'] is None:
        raise ValueError(f'{cfg.filename}: no teacher found (no ADSDataset in '
                         'train_dataloader.dataset, no DataFreeDistiller model, no model)')
    return s


def original_domain(cfg, spec):
    """``(name, dataset)`` of the original domain, or None."""
    from mmseg_dfss.core.pool_compare import PoolSpecError, build_pool
    if spec == 'none':
        return None
    if spec != 'auto':
        return spec, build_pool('original', spec, cfg)[0]
    for key in ('val_dataloader.dataset', 'test_dataloader.dataset'):
        split, _ = key.split('.')
        if not isinstance(cfg.get(split, {}).get('dataset'), dict):
            continue
        try:
            return key, build_pool('original', key, cfg)[0]
        except PoolSpecError as e:
            print(f'warning: original domain {key} cannot be read ({e}); the richness '
                  'verdict compares pools only (set its data_root with --cfg-options, or '
                  'use --original)', file=sys.stderr)
            return None
    return None


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmseg_dfss  # noqa: F401  (registers the plugin)
    from mmseg_dfss.core import PoolScorer
    from mmseg_dfss.core.atomic_file import atomic_write
    from mmseg_dfss.core.shared_teacher import resolve_shared
    from mmseg_dfss.core.pool_compare import (PoolSpecError, build_pool, compare_pools,
                                              parse_pool_args, render_report)
    from mmseg_dfss.utils.pool_outputs import FIGURES, plot_all, write_scores_csv
    try:
        specs = parse_pool_args(args.pools)
        if not osp.isfile(args.config):
            raise FileNotFoundError(f'config file {args.config!r} does not exist')
        from mmseg_dfss.utils.mmseg_tools import check_config_argument
        check_config_argument([args.config])  # an mmseg:: base the installed MMSeg lacks
        cfg = Config.fromfile(args.config)
        cfg.merge_from_dict(args.cfg_options)
        resolve_shared(cfg)  # the ADS wrapper takes model.teacher when it names none
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        s = teacher_settings(cfg)
        if args.teacher_checkpoint:
            s['teacher_checkpoint'] = args.teacher_checkpoint
        if args.cache_dir:
            s['cache_dir'] = None if args.cache_dir == 'none' else args.cache_dir
        eps = args.eps if args.eps is not None else s['num_samples']
        if eps is None:
            raise ValueError(f'{args.config}: no num_samples (eps) in the config; give --eps')
        pools = [(name, build_pool(name, spec, cfg)[0]) for name, spec in specs]
        original = original_domain(cfg, args.original)
        scorer = PoolScorer(s['teacher'], s['teacher_checkpoint'], strategy='ads',
                            bn_layers=s['bn_layers'], score_pipeline=s['score_pipeline'],
                            batch_size=s['score_batch_size'],
                            num_workers=s['score_num_workers'], cache_dir=s['cache_dir'],
                            progress=not args.no_progress,
                            max_unreadable=s['max_unreadable'], io_retries=s['score_io_retries'],
                            allow_random_teacher=args.allow_random_teacher)
    except (PoolSpecError, OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f'error: {e}')
    try:
        summary, details = compare_pools(pools, scorer, eps, original, workers=args.workers,
                                         progress=not args.no_progress)
    except ValueError as e:
        raise SystemExit(f'error: {e}')
    teacher = s['teacher'] if isinstance(s['teacher'], str) else s['teacher'].get('type')
    summary.update(config=args.config, teacher=teacher,
                   teacher_checkpoint=s['teacher_checkpoint'], bn_layers=s['bn_layers'],
                   specs=dict(specs), cache_dir=s['cache_dir'])
    figures = FIGURES if args.out else ()
    report = render_report(summary, args.config, figures)
    print('\n' + report)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with atomic_write(osp.join(args.out, 'report.md')) as f:
            f.write(report)
        with atomic_write(osp.join(args.out, 'summary.json')) as f:
            json.dump(summary, f, indent=1)
        write_scores_csv(osp.join(args.out, 'scores.csv'), details, summary['pools'])
        plot_all(summary, details, args.out)
        written = ('report.md', 'summary.json', 'scores.csv') + FIGURES
        print('written: ' + ', '.join(osp.join(args.out, f) for f in written))
    return 0


if __name__ == '__main__':
    sys.exit(main())
