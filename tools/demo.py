"""The embedded demo: DFSS end to end on the synthetic scenes, on a CPU.

    python tools/demo.py [--work-dir work_dirs/demo] [--full] [--tiny]

Steps (each a real run of the project's tools with the shipped configs; the command
of every step is printed and its log kept under the work dir):

1. write the synthetic rooms (original domain) and the open-world pool;
2. train the teacher (DeepLabV3-R18-tiny) on the rooms with labels;
3. train the student architecture (DeepLabV3-MobileNetV2-tiny) on the rooms with
   labels: the upper reference a data-free method cannot beat;
4. score the pool with ADS (and, for comparison, random and confidence sampling),
   and compare its four sub-domains as separate pools (``tools/compare_pools.py``:
   entropy, ADS distance, the merged selection, the paper's Sec. 3.2 verdicts);
5. distill the student with DFSS (ADS + WDPD) from pool images only, through the one
   command ``tools/compress.py`` (select, train, judge, ship, report under
   ``WORK/compress``);
6. evaluate all on the rooms' test split, the DFSS student through its plain-MMSeg
   export; write ``results.md`` and the figures.

``--full`` adds the paper's Table 3 (random / confidence / ADS sampling, vanilla
loss) and Table 4 (vanilla / WDD / WDPD on ADS samples) in miniature, each cell the
mean ± std over ``--seeds`` seeds. Finished steps are reused when the demo runs again.
"""
import argparse
import csv
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
from mmseg_dfss.core.atomic_file import (atomic_write, open_for_append,  # noqa: E402
                                         save_figure)
TEACHER_CFG = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT_CFG = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'
# the DFSS student's architecture (STUDENT_CFG without its auxiliary head), as the recipe
DFSS_STUDENT_CFG = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'
DFSS_CFG = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'

SETTINGS = {
    'default': dict(num_train=300, num_test=100, pool_size=2000, num_samples=600,
                    val_images=200, teacher_iters=1500, student_iters=1500,
                    distill_iters=1500),
    'tiny': dict(num_train=24, num_test=8, pool_size=64, num_samples=24, val_images=16,
                 teacher_iters=10, student_iters=10, distill_iters=10),
}
SUBDOMAINS = ('near_rooms', 'streets', 'objects', 'textures')
TABLE3 = [('random', 'vanilla'), ('confidence', 'vanilla'), ('ads', 'vanilla')]
TABLE4 = [('ads', 'vanilla'), ('ads', 'wdd'), ('ads', 'wdpd')]


def log(msg):
    print(f'[demo {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def run(args, log_file):
    """Runs a project tool with this interpreter, output to ``log_file``."""
    cmd = [sys.executable, *args]
    log('$ python ' + ' '.join(args) + f'   (log: {osp.relpath(log_file, REPO)})')
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    with open_for_append(log_file) as f:  # a rerun appends; a planted link is refused
        f.write(f'# {time.strftime("%Y-%m-%d %H:%M:%S")} $ python {" ".join(args)}\n'.encode())
        f.flush()
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_file, errors='replace') as f:
            tail = f.read()[-4000:]
        sys.exit(f'demo step failed (exit {proc.returncode}); see {log_file}:\n{tail}')


class Demo:

    def __init__(self, work_dir, setting, seed):
        self.work = work_dir
        self.s = setting
        self.seed = seed
        self.data = osp.join(work_dir, 'data')
        self.logs = osp.join(work_dir, 'logs')
        os.makedirs(self.logs, exist_ok=True)

    # -- options shared by the runs -------------------------------------------------
    def data_opts(self):
        scenes = osp.join(self.data, 'scenes')
        return [f'{s}_dataloader.dataset.data_root={scenes}' for s in ('train', 'val', 'test')]

    def eval_opts(self):
        scenes = osp.join(self.data, 'scenes')
        return [f'{s}_dataloader.dataset.data_root={scenes}' for s in ('val', 'test')]

    @staticmethod
    def schedule_opts(iters):
        return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
                f'param_scheduler.0.end={iters}', f'default_hooks.checkpoint.interval={iters}',
                f'default_hooks.logger.interval={max(1, min(50, iters // 4))}',
                'default_hooks.visualization.draw=False']

    def ads_opts(self, strategy, seed):
        return [f'model.teacher_checkpoint={self.teacher_ckpt}',  # ADS takes the model's
                f'train_dataloader.dataset.dataset.data_root={osp.join(self.data, "pool")}',
                f'train_dataloader.dataset.num_samples={self.s["num_samples"]}',
                f'train_dataloader.dataset.strategy={strategy}',
                f'train_dataloader.dataset.seed={seed}',
                f'train_dataloader.dataset.cache_dir={osp.join(self.work, "ads_cache")}']

    # -- steps ----------------------------------------------------------------------
    def train(self, name, cfg, iters, opts, seed, checkpoints=1):
        """``checkpoints``: how many evenly spaced checkpoints to keep (the DFSS runs
        keep 3, for the agreement-vs-accuracy measurement)."""
        out = osp.join(self.work, name)
        ckpt = osp.join(out, f'iter_{iters}.pth')
        if osp.isfile(ckpt):
            log(f'{name}: reusing {osp.relpath(ckpt, REPO)}')
            return out, ckpt
        os.makedirs(out, exist_ok=True)
        run(['tools/train.py', cfg, '--work-dir', out, '--cfg-options', *opts,
             *self.schedule_opts(iters), f'randomness.seed={seed}',
             f'default_hooks.checkpoint.interval={max(1, iters // checkpoints)}',
             'default_hooks.checkpoint.max_keep_ckpts=-1'],
            osp.join(self.logs, f'{name.replace("/", "_")}.train.log'))
        return out, ckpt

    def evaluate(self, name, cfg, ckpt, plain_mmseg=False, out_dir=None, opts=None):
        """mIoU in [0, 1] on the rooms' test split (cached in ``out_dir``, by default
        next to the checkpoint; ``opts``: the --cfg-options that point ``cfg`` there)."""
        out_dir = out_dir or osp.dirname(ckpt)
        os.makedirs(out_dir, exist_ok=True)
        result_file = osp.join(out_dir, 'test_metrics.json')
        if osp.isfile(result_file) and osp.getmtime(result_file) >= osp.getmtime(ckpt):
            with open(result_file) as f:
                return json.load(f)['mIoU'] / 100.0
        out = osp.join(out_dir, 'test')
        if plain_mmseg:  # MMSeg's own tools/test.py, without this plugin
            from mmseg_dfss.utils import find_mmseg_tool
            tool = [find_mmseg_tool('test.py')]
        else:
            tool = ['tools/test.py']
        run([*tool, cfg, ckpt, '--work-dir', out, '--cfg-options', *(opts or self.eval_opts())],
            osp.join(self.logs, f'{name.replace("/", "_")}.test.log'))
        metrics = sorted(glob.glob(osp.join(out, '*', '*.json')), key=osp.getmtime)[-1]
        with open(metrics) as f:
            result = json.load(f)
        with atomic_write(result_file) as f:
            json.dump(result, f)
        return result['mIoU'] / 100.0

    def score(self, strategy, plot=False):
        out = osp.join(self.work, 'ads', f'scores_{strategy}.csv')
        if not osp.isfile(out) or (plot and not osp.isfile(osp.join(self.work, 'ads',
                                                                    'subdomain_mix.json'))):
            args = ['tools/ads_score.py', DFSS_CFG, '--out', out]
            if plot:
                args += ['--plot', osp.join(self.work, 'ads')]
            run(args + ['--cfg-options', *self.ads_opts(strategy, self.seed), *self.eval_opts()],
                osp.join(self.logs, f'ads_score_{strategy}.log'))
        return out

    def compare(self):
        """The pool's sub-domains as separate candidate pools (paper Sec. 3.2)."""
        out = osp.join(self.work, 'compare')
        summary = osp.join(out, 'summary.json')
        if (not osp.isfile(summary) or osp.getmtime(summary) < osp.getmtime(self.teacher_ckpt)
                or not is_compare_pools_summary(summary)):
            pools = [f'{s}={osp.join(self.data, "pool", s)}' for s in SUBDOMAINS
                     if osp.isdir(osp.join(self.data, 'pool', s))]
            run(['tools/compare_pools.py', DFSS_CFG, '--pools', *pools, '--out', out,
                 '--no-progress', '--cfg-options', *self.ads_opts('ads', self.seed),
                 *self.eval_opts()], osp.join(self.logs, 'compare_pools.log'))
        else:
            log(f'compare: reusing {osp.relpath(summary, REPO)}')
        with open(summary) as f:
            return json.load(f)

    def compress(self):
        """Step 5 as a user runs it: ``tools/compress.py`` with the room teacher and the
        pool folder, the recipe's eps, schedule, learning rate, batch and crop. Returns
        the report (``WORK/compress/report.json``) and the shipped student's true mIoU on
        the rooms (plain MMSeg's test.py on ``student/student.pth``)."""
        out = osp.join(self.work, 'compress')
        iters = self.s['distill_iters']
        every = max(1, iters // 3)  # 3 checkpoints: benchmarks/agreement_vs_accuracy.py
        run(['tools/compress.py', TEACHER_CFG, '--teacher-checkpoint', self.teacher_ckpt,
             '--pool', osp.join(self.data, 'pool'), '--work-dir', out,
             '--student', DFSS_STUDENT_CFG, '--eps', str(self.s['num_samples']),
             '--val-images', str(self.s['val_images']), '--iters', str(iters),
             '--batch-size', '8', '--lr', '0.02', '--crop', '64', '64',
             '--seed', str(self.seed), '--cfg-options', f'train_cfg.val_interval={every}',
             f'default_hooks.checkpoint.interval={every}',
             'default_hooks.checkpoint.max_keep_ckpts=-1'],
            osp.join(self.logs, 'compress.log'))
        with open(osp.join(out, 'report.json')) as f:
            report = json.load(f)
        student = osp.join(out, 'student')
        rooms = [f'test_dataloader.dataset.{k}={v}' for k, v in (
            ('data_root', osp.join(self.data, 'scenes')), ('data_prefix.img_path', 'img_dir/test'),
            ('data_prefix.seg_map_path', 'ann_dir/test'), ('img_suffix', '.png'))]
        miou = self.evaluate('compress', osp.join(student, 'student_config.py'),
                             osp.join(student, 'student.pth'), plain_mmseg=True,
                             out_dir=osp.join(self.work, 'compress_test'), opts=rooms)
        return report, miou

    def distill(self, strategy, mode, seed):
        name = f'dfss/{strategy}_{mode}_seed{seed}'
        opts = (self.ads_opts(strategy, seed) + self.eval_opts()
                + [f'model.distill_loss.mode={mode}'])
        out, ckpt = self.train(name, DFSS_CFG, self.s['distill_iters'], opts, seed,
                               checkpoints=3)
        student_cfg = osp.join(out, 'student', 'student_config.py')
        student_ckpt = osp.join(out, 'student', 'student.pth')
        if not osp.isfile(student_ckpt):
            run(['tools/export_student.py', ckpt, osp.join(out, 'student')],
                osp.join(self.logs, f'{name.replace("/", "_")}.export.log'))
        return self.evaluate(name, student_cfg, student_ckpt, plain_mmseg=True)


def kept_mix(paths, pool_csv):
    """Sub-domain counts of kept pool images (paths ending in ``<subdomain>/<file>``)."""
    with open(pool_csv) as f:
        tags = {row['filename']: row['subdomain'] for row in csv.DictReader(f)}
    counts = {}
    for p in paths:
        tag = tags[osp.join(*p.split(os.sep)[-2:])]
        counts[tag] = counts.get(tag, 0) + 1
    return counts


def subdomain_mix(scores_csv, pool_csv):
    """Sub-domain counts of the images a sampler's scores CSV marks kept."""
    with open(scores_csv) as f:
        kept = [row['img_path'] for row in csv.DictReader(f) if row['selected'] == '1']
    return kept_mix(kept, pool_csv)


def compress_lines(report, out):
    """results.md's lines of the compress report's headline numbers."""
    j, s, t = report['judge'], report['ship'], report['train']
    c = s['compression']['ratio']
    return [f'The DFSS student is the one command\'s (`{out}/report.html`, its command in '
            f'`{out}/report.json`): agreement with the teacher **{j["miou"]:.1f}** mIoU on '
            f'{j["num_images"]} held-out pool images (agreement, not accuracy), shipped from '
            f'`{osp.basename(t["checkpoint"])}` (best agreement of {t["iters"]} iterations); '
            f'ONNX max abs difference {s["max_abs_diff"]:.2g}; {c["params"]:.1f}x fewer '
            f'parameters and {c["flops"]:.1f}x fewer FLOPs than the teacher; latency teacher / '
            f'student on this CPU {c["pytorch_s"]:.2f} in PyTorch, {c["onnxruntime_s"]:.2f} '
            'in onnxruntime (above 1: the student is faster).']


def sample_grid(data_root, out_png, per_row=8):
    """The README's picture of the synthetic domain: rooms, labels, pool sub-domains."""
    from PIL import Image

    from mmseg_dfss.datasets.synthetic import PALETTE
    img_dir = osp.join(data_root, 'scenes', 'img_dir', 'train')
    names = sorted(os.listdir(img_dir))[:per_row]
    rows = [[np.array(Image.open(osp.join(img_dir, n))) for n in names],
            [np.array(PALETTE, np.uint8)[np.array(Image.open(
                osp.join(data_root, 'scenes', 'ann_dir', 'train', n)))] for n in names]]
    labels = ['rooms (original domain)', 'labels']
    with open(osp.join(data_root, 'pool', 'pool.csv')) as f:
        pool = list(csv.DictReader(f))
    for sub in ('near_rooms', 'streets', 'objects', 'textures'):
        files = [r['filename'] for r in pool if r['subdomain'] == sub][:per_row]
        if len(files) == per_row:
            rows.append([np.array(Image.open(osp.join(data_root, 'pool', p))) for p in files])
            labels.append(f'pool: {sub}')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(rows), 1, figsize=(per_row * 1.1, len(rows) * 1.25))
    for ax, row, label in zip(axes, rows, labels):
        ax.imshow(np.concatenate(row, axis=1))
        ax.set_title(label, fontsize=8, loc='left')
        ax.axis('off')
    fig.tight_layout()
    save_figure(fig, out_png, dpi=110)
    plt.close(fig)


def is_compare_pools_summary(path):
    """Whether ``path`` is compare_pools's summary.json (a file another tool wrote there
    is recomputed over, not read)."""
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and {'eps', 'ranking', 'pools'} <= set(summary)


def compare_lines(c):
    """results.md rows of the sub-domain comparison (full report: compare/report.md)."""
    lines = ['', f'The sub-domains as separate candidate pools (`tools/compare_pools.py`, '
             f'eps = {c["eps"]}; ranked by median ADS distance d; entropy in bits):', '',
             '| rank | pool | images | entropy mean | d p5 | d p25 | d median | eps cut alone '
             '| kept in merge |', '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for name in c['ranking']:
        p = c['pools'][name]
        d = p['distance']
        cut = '-' if p['eps_cut_alone'] is None else f'{p["eps_cut_alone"]:.4g}'
        lines.append(f'| {p["rank"]} | {name} | {p["num_images"]} | '
                     f'{p["entropy"]["mean"]:.3f} | {d["p5"]:.4g} | {d["p25"]:.4g} | '
                     f'{d["median"]:.4g} | {cut} | {p["selected_in_merge"]} |')
    if c.get('original'):
        o = c['original']
        lines += ['', f'Original domain ({o["name"]}, {o["num_images"]} rooms): entropy mean '
                  f'{o["entropy"]["mean"]:.3f} bits. Verdicts (`compare/report.md`):', '']
    else:
        lines += ['', 'Verdicts (`compare/report.md`):', '']
    lines += [f'- {name}: {c["pools"][name]["verdict"]["relevance"]}. '
              f'{c["pools"][name]["verdict"]["richness"]}.' for name in c['ranking']]
    return lines


def fmt(values):
    values = np.asarray(values) * 100
    if len(values) == 1:
        return f'{values[0]:.1f}'
    return f'{values.mean():.1f} ± {values.std(ddof=1):.1f}'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--full', action='store_true',
                   help='also the paper\'s Tables 3 and 4 in miniature over --seeds seeds')
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--tiny', action='store_true', help='a minutes-long smoke run (tests)')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    setting = SETTINGS['tiny' if args.tiny else 'default']
    work = osp.abspath(args.work_dir)
    demo = Demo(work, setting, args.seed)
    start = time.time()
    figs = osp.join(work, 'figures')
    os.makedirs(figs, exist_ok=True)

    from mmseg_dfss.datasets.synthetic import generate_synthetic
    log(f'1/6 synthetic rooms and open-world pool -> {demo.data}')
    generate_synthetic(demo.data, seed=args.seed, num_train=setting['num_train'],
                       num_test=setting['num_test'], pool_size=setting['pool_size'])
    sample_grid(demo.data, osp.join(figs, 'synthetic_samples.png'))

    log('2/6 teacher: DeepLabV3-R18-tiny on the rooms, with labels')
    _, demo.teacher_ckpt = demo.train('teacher', TEACHER_CFG, setting['teacher_iters'],
                                      demo.data_opts(), args.seed)
    log('3/6 student architecture on the rooms, with labels (upper reference)')
    _, student_ckpt = demo.train('student_labels', STUDENT_CFG, setting['student_iters'],
                                 demo.data_opts(), args.seed)

    log('4/6 scoring the pool: ADS, random, confidence')
    scores = {s: demo.score(s, plot=(s == 'ads')) for s in ('random', 'confidence', 'ads')}
    pool_csv = osp.join(demo.data, 'pool', 'pool.csv')
    mixes = {s: subdomain_mix(path, pool_csv) for s, path in scores.items()}
    log('4/6 the sub-domains compared as separate pools (tools/compare_pools.py)')
    comparison = demo.compare()

    log('5/6 DFSS: distilling the student from ADS-selected pool images with WDPD '
        '(tools/compress.py)')
    report, dfss = demo.compress()

    log('6/6 evaluation on the rooms test split')
    teacher = demo.evaluate('teacher', TEACHER_CFG, demo.teacher_ckpt)
    upper = demo.evaluate('student_labels', STUDENT_CFG, student_ckpt)
    run(['tools/plot_distribution.py', DFSS_CFG, '--sets',
         *[f'{s}={scores[s]}' for s in ('ads', 'random', 'confidence')], '--out',
         osp.join(figs, 'distribution_tsne.png'), '--max-per-set', '300', '--cfg-options',
         *demo.ads_opts('ads', args.seed), *demo.eval_opts()],
        osp.join(demo.logs, 'plot_distribution.log'))

    eps, pool = setting['num_samples'], setting['pool_size']
    lines = [
        f'## Synthetic demo results (`python tools/demo.py{" --full" if args.full else ""}`)',
        '', f'mIoU (%) on the synthetic rooms test split ({setting["num_test"]} images, '
        f'native 96 px); teacher/student trained {setting["teacher_iters"]} iterations, '
        f'DFSS student distilled {setting["distill_iters"]} iterations on eps = {eps} of '
        f'{pool} pool images by `tools/compress.py` (seed {args.seed}).', '',
        '| model | training data | mIoU |', '| --- | --- | --- |',
        f'| Teacher DeepLabV3-R18-tiny | rooms + labels | {fmt([teacher])} |',
        f'| Student DeepLabV3-MBv2-tiny | rooms + labels (upper reference) | {fmt([upper])} |',
        f'| Student DFSS (ADS + WDPD) | pool only, no labels | {fmt([dfss])} |', '',
        *compress_lines(report, 'compress'), '',
        f'Sub-domains of the eps = {eps} images each sampler keeps:', '',
        '| sampler | ' + ' | '.join(('near_rooms', 'streets', 'objects', 'textures')) + ' |',
        '| --- | --- | --- | --- | --- |'
    ]
    mixes['ads (compress)'] = kept_mix(report['select']['kept'], pool_csv)
    for s in ('ads', 'ads (compress)', 'random', 'confidence'):
        lines.append(f'| {s} | ' + ' | '.join(
            str(mixes[s].get(k, 0)) for k in ('near_rooms', 'streets', 'objects', 'textures'))
            + ' |')

    lines += compare_lines(comparison)

    if args.full:
        seeds = [args.seed + k for k in range(args.seeds)]
        results = {}
        for strategy, mode in dict.fromkeys(TABLE3 + TABLE4):
            log(f'--full: {strategy} sampling, {mode} loss, seeds {seeds}')
            results[strategy, mode] = [demo.distill(strategy, mode, sd) for sd in seeds]
        lines += ['', f'### Table 3 in miniature: sampling strategies (vanilla L1 loss), '
                  f'mIoU (%) mean ± std over seeds {seeds}', '',
                  '| random | confidence | ADS |', '| --- | --- | --- |',
                  '| ' + ' | '.join(fmt(results[k]) for k in TABLE3) + ' |', '',
                  f'### Table 4 in miniature: distillation losses on ADS samples, '
                  f'mIoU (%) mean ± std over seeds {seeds}', '',
                  '| vanilla | +WDD | +WDPD |', '| --- | --- | --- |',
                  '| ' + ' | '.join(fmt(results[k]) for k in TABLE4) + ' |']
        with atomic_write(osp.join(work, 'full_results.json')) as f:
            json.dump({f'{s}/{m}': v for (s, m), v in results.items()}, f, indent=1)

    lines += ['', 'Figures: `figures/synthetic_samples.png`, `ads/d_hist.png`, '
              '`ads/gallery.png`, `ads/subdomain_mix.png`, `figures/distribution_tsne.png`, '
              '`compare/distance_hist.png`, `compare/entropy_hist.png`, '
              '`compare/merge_mix.png`.']
    text = '\n'.join(lines)
    with atomic_write(osp.join(work, 'results.md')) as f:
        f.write(text + '\n')
    print('\n' + text + '\n')
    log(f'done in {time.time() - start:.0f}s; outputs in {work}')


if __name__ == '__main__':
    main()
