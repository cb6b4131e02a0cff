"""Where do the sampled sets lie relative to the original data? (paper Fig. 5/6)

    python tools/plot_distribution.py CONFIG --sets ads=ads.csv random=random.csv \
        confidence=confidence.csv [--method tsne|pca] [--out FILE]

CONFIG is a DFSS config: its ``model.teacher`` / ``model.teacher_checkpoint`` give the
teacher and its ``val_dataloader.dataset`` the original-domain images. Each set is a
CSV written by ``tools/ads_score.py`` (the rows with ``selected == 1``). Every image
goes through the same deterministic pipeline (the ADS score pipeline of CONFIG's
``train_dataloader.dataset``, else resize short side 256), is normalised by the
teacher's data preprocessor, and is described by the teacher's last backbone
feature map, average-pooled. The features are embedded in 2-D with t-SNE
(scikit-learn) or PCA and drawn per set; the printed table gives, per set, the
distance of its feature mean to the original data's mean (in units of the original
features' spread), the number behind the picture.
"""
import argparse
import copy
import csv
import os
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from tqdm import tqdm

import mmseg_dfss  # noqa: F401
from mmseg_dfss.core import build_frozen_segmentor
from mmseg_dfss.core.atomic_file import save_figure
from mmseg_dfss.core.teacher_defaults import default_score_pipeline
from mmseg_dfss.core.preprocess import non_padding_preprocessor
from mmseg_dfss.utils.mmseg_tools import check_config_argument

COLORS = {'original': '#e6b800', 'ads': '#2ca02c', 'confidence': '#9467bd', 'random': '#7f7f7f'}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='DFSS config (teacher, original-domain val split)')
    p.add_argument('--sets', nargs='+', default=[], metavar='NAME=CSV',
                   help='sampled sets: CSVs from tools/ads_score.py')
    p.add_argument('--checkpoint', '--teacher-checkpoint', dest='checkpoint',
                   help='teacher checkpoint, a path or URL (default: the config\'s)')
    p.add_argument('--allow-random-teacher', action='store_true',
                   help='run without a teacher checkpoint (random weights; tests only)')
    p.add_argument('--method', choices=('tsne', 'pca'), default='tsne')
    p.add_argument('--max-per-set', type=int, default=500,
                   help='draw at most this many images per set (seeded subsample)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='work_dirs/plot_distribution/distribution.png',
                   help='the figure to write (default: %(default)s)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args()


def read_selected(path):
    if not osp.isfile(path):
        raise FileNotFoundError(f'set file {path!r} does not exist')
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {'img_path', 'selected'} <= set(reader.fieldnames):
            raise ValueError(f'{path!r} is not a tools/ads_score.py CSV '
                             f'(needs img_path and selected columns)')
        return [row['img_path'] for row in reader if row['selected'] == '1']


def original_paths(cfg):
    from mmseg.registry import DATASETS
    dataset = DATASETS.build(copy.deepcopy(cfg.val_dataloader.dataset))
    return [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]


@torch.no_grad()
def features(teacher, pipeline, paths, desc):
    feats = []
    for path in tqdm(paths, desc=desc):
        packed = pipeline(dict(img_path=path, seg_fields=[], reduce_zero_label=False))
        data = non_padding_preprocessor(teacher.data_preprocessor)(
            dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']]), False)
        feat = teacher.extract_feat(data['inputs'])
        last = feat[-1] if isinstance(feat, (list, tuple)) else feat
        feats.append(last.mean(dim=(2, 3))[0].double().numpy())
    return np.stack(feats)


def embed(x, method, seed):
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    if method == 'pca':
        u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
        return u[:, :2] * s[:2]
    from sklearn.manifold import TSNE
    return TSNE(n_components=2, perplexity=min(30.0, max(5.0, len(x) / 10)), init='pca',
                random_state=seed).fit_transform(x)


def main():
    args = parse_args()
    check_config_argument([args.config])  # an mmseg:: base the installed MMSeg lacks
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if 'teacher' not in cfg.model:
        raise KeyError(f'{args.config}: model.teacher is missing (not a DFSS config?)')
    teacher = build_frozen_segmentor(cfg.model.teacher,
                                     args.checkpoint or cfg.model.get('teacher_checkpoint'),
                                     allow_random_teacher=args.allow_random_teacher)
    from mmseg.registry import TRANSFORMS
    score_pipeline = (cfg.train_dataloader.dataset.get('score_pipeline')
                      or default_score_pipeline(cfg.model.teacher, 'plot_distribution'))
    pipeline = Compose([TRANSFORMS.build(copy.deepcopy(t)) for t in score_pipeline])

    rng = np.random.default_rng(args.seed)
    sets = [('original', original_paths(cfg))]
    for item in args.sets:
        name, sep, path = item.partition('=')
        if not sep:
            raise ValueError(f'--sets expects NAME=CSV, got {item!r}')
        sets.append((name, read_selected(path)))
    feats = {}
    for name, paths in sets:
        if len(paths) > args.max_per_set:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), args.max_per_set, False))]
        if not paths:
            raise ValueError(f'set {name!r} has no images')
        feats[name] = features(teacher, pipeline, paths, name)

    orig = feats['original']
    mu, spread = orig.mean(0), np.sqrt(((orig - orig.mean(0))**2).sum(1).mean()) + 1e-12
    print(f'{"set":<12} {"images":>6} {"mean distance to original (x spread)":>38}')
    for name, f in feats.items():
        print(f'{name:<12} {len(f):>6} {np.linalg.norm(f.mean(0) - mu) / spread:>38.3f}')

    points = embed(np.concatenate(list(feats.values())), args.method, args.seed)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 5.5))
    start = 0
    for name, f in feats.items():
        xy = points[start:start + len(f)]
        start += len(f)
        ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.7, label=f'{name} ({len(f)})',
                   color=COLORS.get(name))
    ax.set_title(f'Teacher features, {args.method.upper()}: original data vs sampled sets')
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=2, fontsize=8)
    fig.tight_layout()
    if osp.dirname(args.out):
        os.makedirs(osp.dirname(args.out), exist_ok=True)
    save_figure(fig, args.out, dpi=120)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
