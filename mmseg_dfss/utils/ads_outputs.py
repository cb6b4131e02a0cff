"""What ADS scoring writes: the per-image CSV, a text summary, the histogram of d with
the eps cut, the gallery of lowest/highest-d images and the sub-domain mix (shared by
tools/ads_score.py and tools/compress.py's select stage)."""
import csv
import json
import os
import os.path as osp

import numpy as np

from ..core.atomic_file import atomic_write, save_figure

GALLERY_N = 8


def write_csv(path, ds):
    res = ds.result
    weight = {int(i): float(w) for i, w in zip(ds.selected, ds.weights)}
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with atomic_write(path, newline='') as f:
        w = csv.writer(f, lineterminator='\n')
        w.writerow(['index', 'img_path', 'score', 'weight', 'selected'])
        for i, p in enumerate(res.paths):
            score = '' if i in res.errors else repr(float(res.scores[i]))
            w.writerow([i, p, score, repr(weight[i]) if i in weight else '',
                        1 if i in weight else 0])


def summary(ds, seconds):
    res = ds.result
    n = len(res.paths)
    lines = [
        f'strategy: {ds.strategy}   pool: {n} images   unreadable: {len(res.errors)}   '
        f'non-finite: {len(res.nonfinite)}   kept (eps): {len(ds.selected)}',
        f'kept scores: {ds.distances.min():.6g} .. {ds.distances.max():.6g}   '
        f'all finite scores: {np.nanmin(res.scores):.6g} .. {np.nanmax(res.scores):.6g}',
        f'time: {seconds:.1f} s ({n / max(seconds, 1e-9):.1f} img/s, cached scores included)',
    ]
    for i, err in list(res.errors.items())[:10]:
        lines.append(f'  unreadable: {res.paths[i]}: {err}')
    if len(res.errors) > 10:
        lines.append(f'  ... and {len(res.errors) - 10} more unreadable')
    mix = ds.subdomain_mix()
    if mix:
        lines.append('kept sub-domains: ' + ', '.join(f'{k}={v}' for k, v in sorted(mix.items())))
    return '\n'.join(lines)


def _read_rgb(path, side=96):
    import mmcv
    img = mmcv.imread(path, channel_order='rgb')
    return mmcv.imrescale(img, side / min(img.shape[:2])) if img is not None else None


def plot_hist(ads_ds, out_dir):
    import matplotlib.pyplot as plt
    d = ads_ds.result.scores[np.isfinite(ads_ds.result.scores)]
    cut = float(ads_ds.distances.max())
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(d, bins=min(60, max(10, d.size // 10)), color='tab:blue', alpha=0.8)
    ax.axvline(cut, color='tab:red', ls='--',
               label=f'eps = {len(ads_ds.selected)} kept (d <= {cut:.4g})')
    ax.set_xlabel('d (Eq. 9, summed over BN layers)')
    ax.set_ylabel('pool images')
    ax.set_title(f'ADS distance over the pool ({d.size} readable images)')
    ax.legend()
    fig.tight_layout()
    save_figure(fig, osp.join(out_dir, 'd_hist.png'), dpi=120)
    plt.close(fig)


def plot_gallery(ads_ds, out_dir):
    import matplotlib.pyplot as plt
    scores = ads_ds.result.scores
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.lexsort((finite, scores[finite]))]
    k = min(GALLERY_N, order.size)
    rows = [('lowest d', order[:k]), ('highest d', order[::-1][:k])]
    fig, axes = plt.subplots(2, k, figsize=(1.8 * k, 4.2), squeeze=False)
    for r, (label, idx) in enumerate(rows):
        for c, i in enumerate(idx):
            ax = axes[r][c]
            img = _read_rgb(ads_ds.result.paths[i])
            if img is not None:
                ax.imshow(img)
            ax.set_title(f'{scores[i]:.3g}', fontsize=8)
            ax.axis('off')
        axes[r][0].text(-0.1, 0.5, label, transform=axes[r][0].transAxes, rotation=90,
                        va='center', ha='right', fontsize=9)
    fig.suptitle('pool images by ADS distance d (kept first: lowest)')
    fig.tight_layout()
    save_figure(fig, osp.join(out_dir, 'gallery.png'), dpi=120)
    plt.close(fig)


def plot_mix(mixes, out_dir):
    import matplotlib.pyplot as plt
    subs = sorted({s for m in mixes.values() for s in m})
    with atomic_write(osp.join(out_dir, 'subdomain_mix.json')) as f:
        json.dump(mixes, f, indent=1, sort_keys=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(mixes)
    for j, (strategy, mix) in enumerate(mixes.items()):
        xs = np.arange(len(subs)) + j * width
        ax.bar(xs, [mix.get(s, 0) for s in subs], width, label=strategy)
    ax.set_xticks(np.arange(len(subs)) + 0.4 - width / 2)
    ax.set_xticklabels(subs)
    ax.set_ylabel('kept images')
    ax.set_title('sub-domains kept by each strategy (same eps)')
    ax.legend()
    fig.tight_layout()
    save_figure(fig, osp.join(out_dir, 'subdomain_mix.png'), dpi=120)
    plt.close(fig)
