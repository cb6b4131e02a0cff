"""The pool stage: what each ``--pool`` offers the teacher (DFSS Sec. 3.2) before ADS
keeps anything: its size, unreadable images, grey-level entropy (Table 5) and ADS
distance d (Eq. 9) summaries; with several pools the comparison and the verdict that
names the pools the training uses (:func:`~mmseg_dfss.core.pool_compare.choose_pools`).
It is ``tools/compare_pools.py`` on the written config: the teacher is built once, and
the scores go to the config's ADS cache, where the select stage reads them."""
import copy
import json
import os
import os.path as osp

from mmseg.registry import DATASETS

from ...core.atomic_file import atomic_write
from ...core.pool_compare import compare_pools, render_report
from ...utils.pool_outputs import FIGURES, plot_all, write_scores_csv
from .select_stage import select_key_parts


def pool_key_parts(cfg):
    """What the comparison depends on: the scoring settings, eps and the pools (without
    their training pipeline)."""
    return select_key_parts(cfg)[:2]


def _sources(ads):
    """``[(name, dataset)]`` of the ADS wrapper's pools, named as in the config."""
    return list(zip(ads.source_names, ads.sources))


def run_pool(cfg, out_dir, names):
    """Compares the pools of ``cfg``'s ADS wrapper (named ``names``, one or several)
    and writes ``report.md``, ``summary.json``, ``scores.csv`` and the figures into
    ``out_dir``; returns the stage's numbers, ``used`` naming the pools to train on."""
    spec = copy.deepcopy(cfg.train_dataloader.dataset)
    spec.update(lazy_init=True, source_names=list(names))  # scores nothing yet
    ads = DATASETS.build(spec)
    ads.dataset.full_init()
    summary, details = compare_pools(_sources(ads), ads.scorer, ads.num_samples)
    os.makedirs(out_dir, exist_ok=True)
    files = dict(summary=osp.join(out_dir, 'summary.json'),
                 report=osp.join(out_dir, 'report.md'),
                 scores=osp.join(out_dir, 'scores.csv'))
    with atomic_write(files['summary'], encoding='utf-8') as f:
        json.dump(summary, f, indent=1)
    plot_all(summary, details, out_dir)
    with atomic_write(files['report'], encoding='utf-8') as f:
        f.write(render_report(summary, 'the pools of tools/compress.py', FIGURES))
    write_scores_csv(files['scores'], details, summary['pools'])
    print(f'pool: {summary["verdict"]}', flush=True)
    files.update({osp.splitext(f)[0]: osp.join(out_dir, f) for f in FIGURES})
    return dict(pools=summary['pools'], eps=summary['eps'], merged=summary['merged'],
                ranking=summary['ranking'], best=summary['best_pool'], used=summary['used'],
                verdict=summary['verdict'], **files)
