"""Score the open-world pool of a config's ADSDataset and write the scores as CSV.

    python tools/ads_score.py CONFIG [--out scores.csv] [--plot DIR]
                              [--teacher-checkpoint PATH_OR_URL] [--allow-random-teacher]
                              [--cfg-options k=v ...] [--launcher none|pytorch|slurm]

CONFIG's ``train_dataloader.dataset`` must be an ``ADSDataset``. The CSV has one row
per pool image: ``index,img_path,score,weight,selected`` (score: the strategy's
ranking key, lower kept first; empty for unreadable images; weight only for kept
images). ``--plot DIR`` writes ``d_hist.png`` (d with the eps cut), ``gallery.png``
(lowest-d and highest-d images) and, for pools whose samples carry ``subdomain``,
``subdomain_mix.png``/``.json`` (what 'ads', 'random' and 'confidence' each keep).
Distributed: ``bash``-launch with torchrun and ``--launcher pytorch``; every rank
scores a shard, rank 0 writes the outputs.
"""
import argparse
import copy
import os
import os.path as osp
import time

import mmseg_dfss  # noqa: F401  (registers the plugin)
import torch
from mmengine.config import Config, DictAction
from mmengine.dist import get_dist_info, init_dist, is_main_process
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

from mmseg_dfss.core.shared_teacher import resolve_shared
from mmseg_dfss.utils.ads_outputs import plot_gallery, plot_hist, plot_mix, summary, write_csv
from mmseg_dfss.utils.mmseg_tools import check_config_argument, init_cpu_dist

STRATEGIES = ('ads', 'random', 'confidence')


def parse_args():
    p = argparse.ArgumentParser(description='Score an open-world pool with ADS (DFSS Sec. 3.3)')
    p.add_argument('config', help='config whose train_dataloader.dataset is an ADSDataset')
    p.add_argument('--out', default=None,
                   help='CSV path (default: <work_dir or work_dirs/ads>/ads_scores.csv)')
    p.add_argument('--plot', default=None, metavar='DIR', help='write figures into DIR')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config entries, e.g. '
                   'train_dataloader.dataset.strategy=random')
    p.add_argument('--teacher-checkpoint', default=None,
                   help="the teacher's weights, a path or URL (default: the config's "
                   'train_dataloader.dataset.teacher_checkpoint)')
    p.add_argument('--allow-random-teacher', action='store_true',
                   help='score without a teacher checkpoint (random weights; tests only)')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def ads_dataset_cfg(cfg, config_path):
    ds = cfg.get('train_dataloader', {}).get('dataset')
    if not ds or ds.get('type') != 'ADSDataset':
        got = None if not ds else ds.get('type')
        raise ValueError(f'{config_path}: train_dataloader.dataset must be an ADSDataset '
                         f'(type={got!r})')
    return ds


def setup_dist(launcher):
    """MMEngine's ``init_dist`` (NCCL) on GPUs; gloo on a CPU-only torch, whose
    launchers would call ``torch.cuda.set_device`` (see ``init_cpu_dist``)."""
    if torch.cuda.is_available():
        init_dist(launcher, backend='nccl')
    else:
        init_cpu_dist(launcher)


def main():
    args = parse_args()
    check_config_argument([args.config])  # an mmseg:: base the installed MMSeg lacks
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    resolve_shared(cfg)  # the ADS wrapper takes model.teacher when it names none
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if args.launcher != 'none':
        setup_dist(args.launcher)
    ds_cfg = ads_dataset_cfg(cfg, args.config)
    if args.teacher_checkpoint:
        ds_cfg['teacher_checkpoint'] = args.teacher_checkpoint
    if args.allow_random_teacher:
        ds_cfg['allow_random_teacher'] = True
    work_dir = cfg.get('work_dir') or 'work_dirs/ads'
    out = args.out or osp.join(work_dir, 'ads_scores.csv')

    t0 = time.time()
    ds = DATASETS.build(copy.deepcopy(ds_cfg))
    seconds = time.time() - t0
    if is_main_process():
        write_csv(out, ds)
        print(summary(ds, seconds))
        print(f'CSV: {out}')

    if args.plot:
        variants = {ds.strategy: ds}
        has_subdomains = bool(ds.subdomain_mix())
        wanted = STRATEGIES if has_subdomains else ('ads', )
        for strategy in wanted:
            if strategy not in variants:
                other = copy.deepcopy(ds_cfg)
                other['strategy'] = strategy
                variants[strategy] = DATASETS.build(other)
        if is_main_process():
            os.makedirs(args.plot, exist_ok=True)
            plot_hist(variants['ads'], args.plot)
            plot_gallery(variants['ads'], args.plot)
            written = ['d_hist.png', 'gallery.png']
            if has_subdomains:
                mixes = {s: variants[s].subdomain_mix() for s in STRATEGIES}
                plot_mix(mixes, args.plot)
                written += ['subdomain_mix.png', 'subdomain_mix.json']
                for s in STRATEGIES:
                    m = mixes[s]
                    print(f'sub-domain mix ({s}): ' +
                          ', '.join(f'{k}={v}' for k, v in sorted(m.items())))
            print(f'plots: {", ".join(osp.join(args.plot, w) for w in written)}')
    if get_dist_info()[1] > 1:
        torch.distributed.barrier()  # rank 0 may still be writing; tear down together
        torch.distributed.destroy_process_group()


if __name__ == '__main__':
    main()
