"""The select stage: ADS scores of the pool (DFSS Sec. 3.3, Eq. 9), the eps kept
images, the histogram of d and the gallery of lowest/highest-d images."""
import copy
import os
import os.path as osp

from mmseg.registry import DATASETS

from ...utils.ads_outputs import plot_gallery, plot_hist, summary, write_csv


def select_key_parts(cfg):
    """What the scores and the selection depend on: the ADS wrapper without the pool's
    training pipeline (augmentation changes what is trained on, not what is kept)."""
    ads = copy.deepcopy(cfg.train_dataloader.dataset.to_dict())
    pool = ads.pop('dataset')
    pools = pool.get('datasets', [pool])
    return ads, [{k: v for k, v in p.items() if k != 'pipeline'} for p in pools], \
        cfg.val_dataloader.dataset.dataset.num_samples


def run_select(cfg, out_dir):
    """Scores the pool (or reads the scores ADS cached), writes ``ads_scores.csv``,
    ``d_hist.png`` and ``gallery.png`` into ``out_dir``; returns the stage's numbers."""
    import time
    t0 = time.time()
    ds = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    seconds = time.time() - t0
    os.makedirs(out_dir, exist_ok=True)
    files = dict(scores=osp.join(out_dir, 'ads_scores.csv'),
                 histogram=osp.join(out_dir, 'd_hist.png'),
                 gallery=osp.join(out_dir, 'gallery.png'))
    write_csv(files['scores'], ds)
    plot_hist(ds, out_dir)
    plot_gallery(ds, out_dir)
    text = summary(ds, seconds)
    print(text, flush=True)
    res = ds.result
    kept = [osp.abspath(res.paths[int(i)]) for i in ds.selected]
    return dict(eps=len(kept), kept=kept, pool_size=len(res.paths),
                unreadable=len(res.errors), strategy=ds.strategy,
                kept_d_max=float(ds.distances.max()), summary=text,
                subdomain_mix=ds.subdomain_mix() or None, **files)
