"""What a pool comparison writes (paper Sec. 3.2): ``scores.csv`` (one row per pool
image) and the figures ``distance_hist.png``, ``entropy_hist.png``, ``merge_mix.png``
(shared by tools/compare_pools.py and tools/compress.py's pool stage)."""
import csv
import os.path as osp

import numpy as np

from ..core.atomic_file import atomic_write, save_figure

FIGURES = ('distance_hist.png', 'entropy_hist.png', 'merge_mix.png')


def write_scores_csv(path, details, pools):
    """One row per pool image: its pool, index, path, d and whether the merged ADS keeps it."""
    with atomic_write(path, newline='') as f:
        w = csv.writer(f, lineterminator='\n')
        w.writerow(['pool', 'index', 'img_path', 'distance', 'selected_in_merge'])
        for name in pools:
            det = details[name]
            for i, (p, s) in enumerate(zip(det['paths'], det['scores'])):
                w.writerow([name, i, p, repr(float(s)) if np.isfinite(s) else '',
                            int(det['selected'][i])])


def plot_all(summary, details, out_dir):
    """The three figures of :data:`FIGURES` into ``out_dir``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(summary['pools'])
    colors = {n: plt.get_cmap('tab10')(k % 10) for k, n in enumerate(names)}

    fig, ax = plt.subplots(figsize=(7, 4))
    all_d = np.concatenate([details[n]['distance'] for n in names])
    lo, hi = all_d.min(), all_d.max()
    log = lo > 0 and hi / lo > 100  # pools far apart: a log axis keeps each one visible
    bins = (np.geomspace(lo, hi, 50) if log else np.linspace(lo, hi, 50)) if hi > lo else 10
    for n in names:
        ax.hist(details[n]['distance'], bins=bins, histtype='step', lw=1.8, color=colors[n],
                label=f'{n} (median {summary["pools"][n]["distance"]["median"]:.3g})')
    ax.axvline(summary['merged']['cut'], color='k', ls='--',
               label=f'merged eps = {summary["eps"]} cut ({summary["merged"]["cut"]:.3g})')
    if log:
        from matplotlib.ticker import FuncFormatter, NullFormatter
        ax.set_xscale('log')
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f'{x:g}'))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel('ADS distance d (Eq. 9, summed over BN layers)' + (', log axis' if log else ''))
    ax.set_ylabel('images')
    ax.set_title('ADS distance per pool (lower = closer to the teacher\'s data)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, osp.join(out_dir, 'distance_hist.png'), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 8, 65)
    for n in names:
        ax.hist(details[n]['entropy'], bins=bins, histtype='step', lw=1.8, color=colors[n],
                density=True, label=f'{n} (mean {summary["pools"][n]["entropy"]["mean"]:.3f})')
    if summary.get('original'):
        o = summary['original']
        ax.hist(details[None]['entropy'], bins=bins, histtype='stepfilled', alpha=0.25,
                color='k', density=True,
                label=f'original: {o["name"]} (mean {o["entropy"]["mean"]:.3f})')
    ax.set_xlabel('grey-level entropy (bits)')
    ax.set_ylabel('density')
    ax.set_title('Image information entropy (Table 5)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, osp.join(out_dir, 'entropy_hist.png'), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 0.6 * len(names) + 1.6))
    y = np.arange(len(names))
    sizes = [summary['pools'][n]['num_images'] for n in names]
    kept = [summary['pools'][n]['selected_in_merge'] for n in names]
    ax.barh(y, sizes, color='0.85', label='pool images')
    ax.barh(y, kept, color=[colors[n] for n in names], label='kept by ADS (merged)')
    for k, (s, c) in enumerate(zip(sizes, kept)):
        ax.text(max(s, c), k, f' {c}/{s}', va='center', fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.set_xlim(0, max(sizes) * 1.35)
    ax.invert_yaxis()
    ax.set_xlabel('images')
    ax.set_title(f'ADS over the merged pools: where the eps = {summary["eps"]} come from')
    ax.legend(fontsize=8, loc='lower right')
    fig.tight_layout()
    save_figure(fig, osp.join(out_dir, 'merge_mix.png'), dpi=110)
    plt.close(fig)
