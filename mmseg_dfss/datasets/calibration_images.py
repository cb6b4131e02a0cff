"""Image sets for INT8 calibration and its parity check, with no original-domain data.

A SPEC is a folder of images, or ``ads:CONFIG``: the pool images the DFSS config's
``ADSDataset`` ranks, read from its score cache (nothing is scored again). ADS's kept
images are the pool images whose BN statistics are closest to the teacher's training
distribution (Eq. 8-9): the data-free stand-in for the original domain that static
quantization asks for.
"""
import copy
import os.path as osp
from dataclasses import dataclass, field

import numpy as np
from mmengine.config import Config
from mmseg.registry import DATASETS

from ..core.cached_scores import CachedScoresOnly
from ..core.pool_scorer import select_lowest
from ..core.shared_teacher import resolve_shared
from .unlabeled_image import UnlabeledImageDataset

ADS_PREFIX = 'ads:'
DEFAULT_NUM_CHECK = 100  # ADS held-out images checked after calibration


@dataclass
class ADSRanking:
    """Readable pool images of a DFSS config, best ADS rank first, and its eps."""
    paths: list
    eps: int
    strategy: str
    pool_size: int
    unreadable: int = 0

    @property
    def kept(self):
        return self.paths[:self.eps]

    def held_out(self, num):
        """The ``num`` images ranked just after the eps cut (never trained on)."""
        return self.paths[self.eps:self.eps + num]

    def worst(self, num):
        """The ``num`` images ranked last."""
        return self.paths[::-1][:num]


@dataclass
class CalibrationSets:
    calibration: list
    check: list
    describe: dict = field(default_factory=dict)


def load_config(config, cfg_options=None):
    """The config with ``cfg_options`` merged and the distiller's teacher given to its
    datasets (:func:`~mmseg_dfss.core.shared_teacher.resolve_shared`)."""
    cfg = Config.fromfile(config) if isinstance(config, str) else copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return resolve_shared(cfg)


def ads_ranking(config, cfg_options=None):
    """The ADS ranking of a DFSS config's pool (``train_dataloader.dataset``, an
    ``ADSDataset``), read from its score cache.

    Raises:
        MissingScoresError: the cache lacks scores; its message says to run
            ``python tools/ads_score.py CONFIG`` first.
    """
    cfg = load_config(config, cfg_options)
    name = config if isinstance(config, str) else getattr(cfg, 'filename', 'the config')
    ds_cfg = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    if ds_cfg.get('type') != 'ADSDataset':
        raise ValueError(f'{ADS_PREFIX}{name}: train_dataloader.dataset must be an ADSDataset '
                         f'(type={ds_cfg.get("type")!r}); give a DFSS config, or a folder of '
                         'images')
    ds_cfg = copy.deepcopy(ds_cfg.to_dict() if hasattr(ds_cfg, 'to_dict') else ds_cfg)
    ds_cfg['lazy_init'] = True
    ds = DATASETS.build(ds_cfg)
    hint = f'python tools/ads_score.py {name}'
    if cfg_options:
        hint += ' --cfg-options ' + ' '.join(f'{k}={v}' for k, v in cfg_options.items())
    ds.scorer = CachedScoresOnly.like(ds.scorer, hint=hint)
    ds.full_init()
    res = ds.result
    finite = int(np.isfinite(res.scores).sum())
    order = select_lowest(res.scores, finite)
    return ADSRanking(paths=[res.paths[i] for i in order], eps=int(ds.num_samples),
                      strategy=ds.strategy, pool_size=len(res.paths),
                      unreadable=len(res.errors))


def spread(paths, num):
    """``num`` of ``paths`` evenly spaced over their order (all when fewer)."""
    if num >= len(paths):
        return list(paths)
    return [paths[int(i)] for i in np.linspace(0, len(paths) - 1, num).round()]


def folder_images(folder):
    """Image files under ``folder`` (recursive, sorted)."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder!r} does not exist (a SPEC is a folder '
                                f'of images or {ADS_PREFIX}CONFIG)')
    ds = UnlabeledImageDataset(data_prefix=dict(img_path=folder), pipeline=[], lazy_init=True)
    paths = [osp.join(folder, p) for p in ds.image_list()]
    if not paths:
        raise FileNotFoundError(f'image folder {folder!r} holds no images')
    return paths


def calibration_sets(spec, num=200, check=None, num_check=DEFAULT_NUM_CHECK, seed=0,
                     cfg_options=None):
    """Calibration and parity-check images of a SPEC.

    - ``ads:CONFIG``: ``num`` of the ADS-kept images, evenly over their ranks; check
      images: the ``num_check`` held-out images ranked just after the eps cut.
    - a folder: a tenth of its images (at least one), drawn with ``seed``, is held back
      for the check and never calibrates; ``num`` of the rest, drawn with ``seed``.

    ``check`` (a SPEC) replaces the default check images (``ads:``: its held-out
    images; a folder: all of it, nothing held back from ``spec``).
    """
    if not isinstance(num, int) or num < 1:
        raise ValueError(f'--num must be a positive integer, got {num!r}')
    if not isinstance(num_check, int) or num_check < 1:
        raise ValueError(f'--num-check must be a positive integer, got {num_check!r}')
    describe = dict(spec=spec)
    if spec.startswith(ADS_PREFIX):
        rank = ads_ranking(spec[len(ADS_PREFIX):], cfg_options)
        calib = spread(rank.kept, num)
        held = rank.held_out(num_check) if check is None else None
        describe.update(source=f'{len(calib)} of the {rank.eps} images ADS ({rank.strategy}) '
                        f'kept of {rank.pool_size} pool images, evenly over their ranks')
        if held is not None:
            if not held:
                raise ValueError(f'{spec}: the pool has no images ranked after the eps cut '
                                 f'({rank.eps}) to check with: give --check-images')
            describe['check'] = (f'{len(held)} ADS held-out images (ranks {rank.eps} .. '
                                 f'{rank.eps + len(held) - 1})')
    else:
        paths = folder_images(spec)
        perm = np.random.default_rng(seed).permutation(len(paths))
        held = None
        if check is None:
            k = max(1, len(paths) // 10)
            if len(paths) - k < 1:
                raise ValueError(f'{spec}: {len(paths)} image(s) cannot be split into '
                                 'calibration and check images: give --check-images')
            held = [paths[i] for i in sorted(perm[:k])]
            perm = perm[k:]
            describe['check'] = f'{len(held)} images held back from {spec} (seed {seed})'
        calib = [paths[i] for i in sorted(perm[:num])]
        describe['source'] = f'{len(calib)} of {len(paths)} images of {spec} (seed {seed})'
    if held is None:
        if check.startswith(ADS_PREFIX):
            rank = ads_ranking(check[len(ADS_PREFIX):], cfg_options)
            held = rank.held_out(num_check)
            describe['check'] = f'{len(held)} ADS held-out images of {check}'
        else:
            held = folder_images(check)
            describe['check'] = f'{len(held)} images of {check}'
    return CalibrationSets(calib, held, describe)


__all__ = ['ADS_PREFIX', 'ADSRanking', 'CalibrationSets', 'ads_ranking', 'calibration_sets',
           'folder_images', 'spread']
