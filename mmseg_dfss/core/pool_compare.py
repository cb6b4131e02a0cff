"""Which open-world pool to give DFSS for a teacher: the paper's Sec. 3.2 as numbers.

The paper picks the pool by two principles: *task relevance* (Eq. 5: the pool's
images should resemble the teacher's task; measured here by the ADS distance d
of Eq. 9 over the pool, lower = closer to the teacher's training data) and
*information richness* (Eq. 6: R(D) <= R(D_pool), R being the image-entropy
statistics of Table 5, :mod:`mmseg_dfss.core.entropy`). :func:`compare_pools`
measures both for several pools and also runs ADS over the pools merged, to
show how many of the eps kept images each pool would contribute. It is the
engine of ``tools/compare_pools.py``.

Pools are given as ``NAME=SPEC``: an image folder, a list file (one path per
line, relative to the list's folder), a COCO annotation ``.json`` (images in
``<root>/<split>`` for ``<root>/annotations/*_<split>.json``, or
``ANN.json:IMAGE_DIR``), or a dotted dataset key of the config.
"""
import copy
import os.path as osp
import re

import numpy as np

from .entropy import pool_entropies, summarize_entropy
from .image_header import IMG_EXTENSIONS
from .selection import check_num_samples, select_lowest

# dataset wrappers opened to the pool inside when a config key names them
WRAPPERS = ('ADSDataset', 'RepeatDataset', 'ClassBalancedDataset')
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]*$')
# a pool whose p5, p25 and median d are all within this factor of the best pool's
# counts as "close" to it (ADS keeps from the low tail, so the tail counts too)
CLOSE_FACTOR = 1.10


class PoolSpecError(ValueError):
    """A ``--pools NAME=SPEC`` argument that cannot be turned into a pool."""


def parse_pool_args(items):
    """``['a=SPEC', ...]`` -> ``[('a', 'SPEC'), ...]``; names must be distinct."""
    pools = []
    for item in items:
        if '=' not in item:
            raise PoolSpecError(f'--pools {item!r}: expected NAME=SPEC, e.g. '
                                'coco=data/coco/annotations/instances_train2017.json')
        name, spec = (part.strip() for part in item.split('=', 1))
        if not name or not NAME_RE.match(name):
            raise PoolSpecError(f'--pools {item!r}: the pool name {name!r} must be non-empty '
                                'letters, digits, _ . + - (starting with a letter or digit)')
        if not spec:
            raise PoolSpecError(f'--pools {item!r}: pool {name!r} has an empty SPEC')
        if name in dict(pools):
            raise PoolSpecError(f'--pools: the pool name {name!r} is given twice')
        pools.append((name, spec))
    if not pools:
        raise PoolSpecError('--pools: give at least one NAME=SPEC')
    return pools


def _get_key(cfg, dotted):
    node = cfg
    for part in dotted.split('.'):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif hasattr(node, 'get') and part in node:
            node = node[part]
        else:
            return None
    return node


def _strip_pipelines(ds_cfg):
    """Opens wrappers to the pool and drops pipelines (only file paths are needed)."""
    ds_cfg = copy.deepcopy(dict(ds_cfg))
    while ds_cfg.get('type') in WRAPPERS and isinstance(ds_cfg.get('dataset'), dict):
        ds_cfg = copy.deepcopy(dict(ds_cfg['dataset']))
    if isinstance(ds_cfg.get('datasets'), (list, tuple)):  # ConcatDataset
        ds_cfg['datasets'] = [_strip_pipelines(d) for d in ds_cfg['datasets']]
    elif 'type' in ds_cfg and ds_cfg.get('type') != 'ConcatDataset':
        ds_cfg['pipeline'] = []
    return ds_cfg


def dataset_keys(cfg):
    """Dotted keys of the dataloaders' datasets in ``cfg`` (for error messages)."""
    keys = []
    for split in ('train', 'val', 'test'):
        node, key = _get_key(cfg, f'{split}_dataloader.dataset'), f'{split}_dataloader.dataset'
        while isinstance(node, dict) and 'type' in node:
            keys.append(key)
            if not isinstance(node.get('dataset'), dict):
                break
            node, key = node['dataset'], key + '.dataset'
    return keys


def _coco_image_dir(ann_file):
    """COCO's layout: ``<root>/annotations/<kind>_<split>.json`` -> ``<root>/<split>``."""
    ann_dir = osp.dirname(osp.abspath(ann_file))
    stem = osp.splitext(osp.basename(ann_file))[0]
    split = stem.rsplit('_', 1)[-1]
    tried = []
    if osp.basename(ann_dir) == 'annotations':
        tried.append(osp.join(osp.dirname(ann_dir), split))
    tried.append(osp.join(ann_dir, split))
    for folder in tried:
        if osp.isdir(folder):
            return folder
    raise PoolSpecError(f'cannot find the images of the COCO annotation file {ann_file!r} '
                        f'(looked in {tried}); give their folder as NAME=ANN.json:IMAGE_DIR')


def pool_dataset_cfg(spec, cfg=None):
    """The dataset config of one SPEC (see the module docstring) and its kind."""
    if osp.isdir(spec):
        return dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=spec),
                    pipeline=[]), 'folder'
    ann, img_dir = spec, None
    if not osp.exists(spec) and ':' in spec:
        head, tail = spec.rsplit(':', 1)
        if head.lower().endswith('.json'):
            ann, img_dir = head, tail
    if ann.lower().endswith('.json'):
        if not osp.isfile(ann):
            raise PoolSpecError(f'COCO annotation file {ann!r} does not exist')
        if img_dir is None:
            img_dir = _coco_image_dir(ann)
        elif not osp.isdir(img_dir):
            raise PoolSpecError(f'image folder {img_dir!r} (of {ann!r}) does not exist')
        return dict(type='COCOPoolDataset', ann_file=osp.abspath(ann),
                    data_prefix=dict(img_path=img_dir), pipeline=[]), 'COCO annotations'
    if osp.isfile(spec):
        if spec.lower().endswith(IMG_EXTENSIONS):
            raise PoolSpecError(f'{spec!r} is one image; a pool is a folder, a list file, a '
                                'COCO .json or a dataset key')
        if spec.lower().endswith('.py'):
            raise PoolSpecError(f'{spec!r} is a config file; name a dataset in it by its '
                                'dotted key in CONFIG (e.g. train_dataloader.dataset.dataset)')
        with open(spec, encoding='utf-8', errors='replace') as f:
            if not any(line.strip() for line in f):
                raise PoolSpecError(f'list file {spec!r} is empty (one image path per line)')
        return dict(type='UnlabeledImageDataset', ann_file=osp.abspath(spec),
                    data_prefix=dict(img_path=osp.dirname(osp.abspath(spec))),
                    pipeline=[]), 'list file'
    if cfg is not None:
        found = _get_key(cfg, spec)
        if found is not None:
            if not isinstance(found, dict) or not isinstance(found.get('type'), str):
                raise PoolSpecError(f'{spec!r} of {cfg.filename} is not a dataset config '
                                    '(a dict with a type)')
            return _strip_pipelines(found), 'config key'
    where = f' nor a dataset key of {cfg.filename} (its dataloaders\' datasets: ' \
        f'{dataset_keys(cfg)})' if cfg is not None else ''
    if '/' in spec or osp.sep in spec or spec.startswith('.'):
        raise PoolSpecError(f'{spec!r} does not exist: not a folder, list file or COCO '
                            f'.json{where}')
    raise PoolSpecError(f'{spec!r} is not an existing folder, list file or COCO .json{where}')


def build_pool(name, spec, cfg=None):
    """Builds the pool of one ``NAME=SPEC``; every failure is a :class:`PoolSpecError`
    naming the pool and its SPEC."""
    from mmseg.registry import DATASETS
    try:
        ds_cfg, kind = pool_dataset_cfg(spec, cfg)
        dataset = DATASETS.build(ds_cfg)
        dataset.full_init()
        n = len(dataset)
    except PoolSpecError as e:
        raise PoolSpecError(f'pool {name!r}: {e}') from None
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
        raise PoolSpecError(f'pool {name!r} ({spec}): {type(e).__name__}: {e}') from e
    if n == 0:
        raise PoolSpecError(f'pool {name!r} ({spec}): no images')
    return dataset, kind


def image_paths(dataset):
    return [str(dataset.get_data_info(i)['img_path']) for i in range(len(dataset))]


def _quantiles(d):
    p5, p25, p50 = np.percentile(d, [5, 25, 50])
    return dict(p5=float(p5), p25=float(p25), median=float(p50))


def compare_pools(pools, scorer, eps, original=None, workers=1, progress=True):
    """Measures each pool and ADS over the pools merged.

    Args:
        pools: ``[(name, dataset), ...]`` (datasets with ``get_data_info``).
        scorer: a :class:`~mmseg_dfss.core.PoolScorer` with ``strategy='ads'``
            (its ``cache_dir`` makes a rerun or a later DFSS run reuse the scores).
        eps: the number of images ADS keeps.
        original: ``(name, dataset)`` of the teacher's original domain, or None.
        workers / progress: entropy reader processes, progress bars.

    Returns:
        ``(summary, details)``: the JSON-able summary (``summary.json``) and, per
        pool, the per-image arrays behind it (``entropy``, ``distance``,
        ``paths``, ``selected`` mask).
    """
    check_num_samples(eps)
    total = sum(len(ds) for _, ds in pools)
    if eps > total:
        raise ValueError(f'eps = {eps} is larger than the {total} images of all pools together')
    summary = dict(eps=int(eps), pools={}, original=None, merged=None)
    details = {}
    if original is not None:
        oname, ods = original
        ent, bad = pool_entropies(image_paths(ods), workers, progress,
                                  f'entropy: original domain {oname} ({len(ods)} images)')
        if not ent:
            raise ValueError(f'original domain {oname}: no readable image')
        summary['original'] = dict(name=oname, num_images=len(ods), unreadable=len(bad),
                                   entropy=summarize_entropy(ent))
        details[None] = dict(entropy=np.asarray(ent))
    scores = []
    for name, ds in pools:
        paths = image_paths(ds)
        ent, bad = pool_entropies(paths, workers, progress,
                                  f'entropy: pool {name} ({len(paths)} images)')
        if progress:
            print(f'ADS distance: pool {name} ({len(paths)} images)', flush=True)
        result = scorer.score(ds)
        s = np.asarray(result.scores, np.float64)
        d = s[np.isfinite(s)]
        if d.size == 0 or not ent:
            raise ValueError(f'pool {name!r}: no readable image among its {len(paths)}')
        scores.append(s)
        e = summarize_entropy(ent)
        summary['pools'][name] = dict(
            num_images=len(paths), unreadable=int(len(result.errors)),
            entropy=dict(mean=e['mean'], median=e['median'], variance=e['variance']),
            distance=_quantiles(d),
            eps_cut_alone=float(np.sort(d)[eps - 1]) if eps <= d.size else None)
        details[name] = dict(entropy=np.asarray(ent), distance=d, paths=paths, scores=s)

    # ADS over the pools merged (as ADSDataset over a ConcatDataset of them selects)
    merged = np.concatenate(scores)
    try:
        keep = select_lowest(merged, eps)
    except ValueError as e:
        raise ValueError(f'merged pools: {e}') from None
    source = np.searchsorted(np.cumsum([s.size for s in scores]), keep, side='right')
    summary['merged'] = dict(cut=float(merged[keep].max()), sources={})
    offsets = np.concatenate([[0], np.cumsum([s.size for s in scores])])
    for k, (name, _) in enumerate(pools):
        kept = merged[keep[source == k]]
        summary['pools'][name]['selected_in_merge'] = int(kept.size)
        summary['pools'][name]['selected_median_distance'] = (
            float(np.median(kept)) if kept.size else None)
        mask = np.zeros(scores[k].size, bool)
        mask[keep[source == k] - offsets[k]] = True
        details[name]['selected'] = mask
        summary['merged']['sources'][name] = dict(
            selected=int(kept.size), median_distance=summary['pools'][name][
                'selected_median_distance'])
    add_verdicts(summary)
    return summary, details


def _ratios(d, best):
    """A pool's p5, p25 and median d over the best pool's."""
    return {q: d[q] / best[q] if best[q] > 0 else float('inf') for q in ('p5', 'p25', 'median')}


def choose_pools(summary):
    """The pools a DFSS run trains on, from a :func:`compare_pools` summary (with its
    verdicts): the most task-relevant pool (lowest median d, Eq. 5) and every pool close
    to it (p5, p25 and median d within :data:`CLOSE_FACTOR` of the best's), which add
    scale (Eq. 6: more images near the original distribution for ADS to keep); a less
    relevant pool is left out. With an original domain, a pool below its entropy mean
    (Eq. 6, richness) is left out too, the best pool excepted (one is always used).
    Returns ``(used names in the summary's pool order, one-line verdict)``."""
    pools, best = summary['pools'], summary['best_pool']
    bd = pools[best]['distance']
    orig = summary.get('original')
    used, left = [], []
    for name, p in pools.items():
        far = [f'{q} {r:.2f}x' for q, r in _ratios(p['distance'], bd).items()
               if r > CLOSE_FACTOR]
        poor = orig is not None and p['entropy']['mean'] < orig['entropy']['mean']
        if name == best or not far and not poor:
            used.append(name)
        elif far:
            left.append(f'{name} (less relevant: d {", ".join(far)} those of {best}, over '
                        f'{CLOSE_FACTOR:.2f}x)')
        else:
            left.append(f'{name} (entropy mean {p["entropy"]["mean"]:.3f} below the original '
                        f'domain\'s {orig["entropy"]["mean"]:.3f} bits)')
    if len(pools) == 1:
        verdict = f'one pool: {best} is used'
    else:
        verdict = (f'used: {", ".join(used)} (the most relevant pool {best}'
                   + (' and the pools within ' f'{CLOSE_FACTOR:.2f}x of its d, merged for scale'
                      if len(used) > 1 else '') + ')')
        if left:
            verdict += '; left out: ' + '; '.join(left)
    return used, verdict


def add_verdicts(summary):
    """Ranks the pools by median d and writes each pool's verdict against the
    paper's two principles (relevance, Eq. 5; richness and scale, Eq. 6)."""
    pools = summary['pools']
    order = sorted(pools, key=lambda n: (pools[n]['distance']['median'], n))
    best = order[0]
    bd = pools[best]['distance']
    by_entropy = sorted(pools, key=lambda n: -pools[n]['entropy']['mean'])
    orig = summary.get('original')
    summary['best_pool'] = best
    summary['ranking'] = order
    for rank, name in enumerate(order, 1):
        p = pools[name]
        p['rank'] = rank
        d = p['distance']
        kept = f'ADS over the merged pools keeps {p["selected_in_merge"]} of its ' \
            f'{p["num_images"]} images ({p["selected_in_merge"] / p["num_images"]:.0%})'
        if len(pools) == 1:
            rel = f'relevance: the only pool (median d {d["median"]:.4g}); {kept}'
        elif name == best:
            rel = (f'relevance: best of the {len(pools)} pools (lowest median d '
                   f'{d["median"]:.4g}); {kept}')
        else:
            ratios = _ratios(d, bd)
            close = all(r <= CLOSE_FACTOR for r in ratios.values())
            qual = f'close to the best pool {best}' if close else f'less relevant than {best}'
            rel = (f'relevance: {qual}, rank {rank} of {len(pools)} (median d '
                   f'{ratios["median"]:.2f}x, p25 {ratios["p25"]:.2f}x, p5 {ratios["p5"]:.2f}x '
                   f'those of {best}); {kept}')
        mean = p['entropy']['mean']
        erank = by_entropy.index(name) + 1
        if orig is not None:
            om = orig['entropy']['mean']
            if mean >= om:
                rich = (f'richness: meets Eq. 6 (entropy mean {mean:.3f} >= the original '
                        f'domain\'s {om:.3f} bits)')
            else:
                rich = (f'richness: below the original domain by {om - mean:.3f} bits (entropy '
                        f'mean {mean:.3f} < {om:.3f}; Eq. 6 asks R(original) <= R(pool))')
            ratio = p['num_images'] / max(orig['num_images'], 1)
            rich += (f'; scale: {p["num_images"]} images, {ratio:.3g}x the original '
                     f'domain\'s {orig["num_images"]}')
        else:
            rich = (f'richness: entropy mean {mean:.3f} bits, {erank} of {len(pools)} '
                    '(no original-domain dataset to compare with)')
        p['verdict'] = dict(relevance=rel, richness=rich)
    summary['used'], summary['verdict'] = choose_pools(summary)
    return summary


def render_report(summary, title, figures=()):
    """``report.md`` of a comparison."""
    eps = summary['eps']
    pools = summary['pools']
    lines = [f'# Pool comparison: {title}', '']
    for key, label in (('teacher', 'Teacher'), ('teacher_checkpoint', 'Checkpoint'),
                       ('bn_layers', 'BN layers')):
        if summary.get(key) is not None:
            lines.append(f'- {label}: `{summary[key]}`')
    lines.append(f'- eps (images ADS keeps): {eps}')
    orig = summary.get('original')
    if orig:
        e = orig['entropy']
        lines.append(f'- Original domain `{orig["name"]}`: {orig["num_images"]} images, '
                     f'grey-level entropy mean {e["mean"]:.3f}, median {e["median"]:.3f}, '
                     f'variance {e["variance"]:.3f} bits')
    else:
        lines.append('- Original domain: none given (richness is compared between pools only)')
    lines += ['', '## Per pool (ranked by median ADS distance d, Eq. 9; lower = closer to the '
              'teacher\'s data)', '',
              '| rank | pool | images | unreadable | entropy mean | median | variance | d p5 '
              '| d p25 | d median | eps cut alone | kept in merge |',
              '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: '
              '| ---: |']
    for name in summary['ranking']:
        p = pools[name]
        e, d = p['entropy'], p['distance']
        cut = f'{p["eps_cut_alone"]:.4g}' if p['eps_cut_alone'] is not None \
            else f'(< eps: all {p["num_images"]})'
        lines.append(f'| {p["rank"]} | {name} | {p["num_images"]} | {p["unreadable"]} | '
                     f'{e["mean"]:.3f} | {e["median"]:.3f} | {e["variance"]:.3f} | '
                     f'{d["p5"]:.4g} | {d["p25"]:.4g} | {d["median"]:.4g} | {cut} | '
                     f'{p["selected_in_merge"]} |')
    merged = summary['merged']
    lines += ['', f'## The pools merged: ADS keeps eps = {eps} (cut at d = {merged["cut"]:.4g})',
              '', '| pool | kept | share of eps | median d of the kept |',
              '| --- | ---: | ---: | ---: |']
    for name in pools:
        s = merged['sources'][name]
        med = f'{s["median_distance"]:.4g}' if s['median_distance'] is not None else '-'
        lines.append(f'| {name} | {s["selected"]} | {s["selected"] / eps:.1%} | {med} |')
    lines += ['', '## Verdicts (paper Sec. 3.2: task relevance, Eq. 5; information richness '
              'and scale, Eq. 6)', '']
    for name in summary['ranking']:
        v = pools[name]['verdict']
        lines.append(f'- **{name}**: {v["relevance"]}. {v["richness"]}.')
    lines += ['', f'**Pools to train on**: {summary["verdict"]}.']
    if figures:
        lines += ['', '## Figures', '']
        lines += [f'![{osp.splitext(f)[0]}]({f})' for f in figures]
    return '\n'.join(lines) + '\n'


__all__ = ['PoolSpecError', 'parse_pool_args', 'pool_dataset_cfg', 'build_pool',
           'compare_pools', 'add_verdicts', 'choose_pools', 'render_report', 'dataset_keys']
