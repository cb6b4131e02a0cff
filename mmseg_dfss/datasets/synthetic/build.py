"""Writes the synthetic original domain and open-world pool as PNG files.

Layout under ``root``::

    scenes/img_dir/{train,test}/00000.png   RGB rooms
    scenes/ann_dir/{train,test}/00000.png   labels 0..6 (see rooms.CLASSES)
    pool/<sub-domain>/000000.png            unlabeled pool images
    pool/pool.csv                           index,filename,subdomain
    meta.json                               the arguments that made it

Image ``i`` of a split depends only on (seed, split, i), so regenerating with the
same arguments gives byte-identical files, and a finished layout whose
``meta.json`` matches is reused as is.

``meta.json`` is also the marker of what this module made: it is written first (marked
unfinished) and says which folders are its own. Other arguments regenerate only those
folders; a non-empty ``root`` without it is refused, as is a link in their place.
"""
import csv
import json
import os
import os.path as osp
import shutil

import numpy as np
from PIL import Image
from tqdm import tqdm

from ...core.atomic_file import atomic_write
from .pool import OpenWorldPoolGenerator
from .rooms import RoomSceneGenerator

SPLIT_IDS = {'train': 0, 'test': 1}
FORMAT_VERSION = 1
OWN_FOLDERS = ('scenes', 'pool')
META_KEYS = {'version', 'seed', 'num_train', 'num_test', 'pool_size', 'size', 'pool_mix'}


def _save_png(path, array):
    with atomic_write(path, 'wb') as f:
        Image.fromarray(array).save(f, format='PNG')


def _own_meta(root):
    """The ``meta.json`` this module wrote in ``root`` (None: there is none); a file of
    that name it did not write, or a link, is an error."""
    path = osp.join(root, 'meta.json')
    if osp.islink(path):
        raise ValueError(f'synthetic data: {path!r} is a link; generate_synthetic never '
                         'writes through a link: choose another --out')
    if not osp.exists(path):
        return None
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or not META_KEYS <= set(meta):
        raise ValueError(f'synthetic data: {path!r} was not written by generate_synthetic; '
                         f'{root!r} is not its folder: choose an empty or new --out')
    return meta


def _claim(root, meta):
    """Makes ``root`` this module's (its marker first), or refuses a folder it did not
    make; then removes the folders its marker names, links refused."""
    own = _own_meta(root) if osp.isdir(root) else None
    if own is None and osp.isdir(root) and os.listdir(root):
        raise ValueError(f'synthetic data: {root!r} is not empty and holds no meta.json of '
                         'generate_synthetic; it deletes and writes only in folders it made: '
                         'choose an empty or new --out')
    folders = (own or {}).get('folders', list(OWN_FOLDERS))
    for sub in folders:
        path = osp.join(root, sub)
        if osp.islink(path) or sub not in OWN_FOLDERS:
            raise ValueError(f'synthetic data: {path!r} is a link or not a folder this '
                             'module makes; generate_synthetic never deletes or writes '
                             'through it: choose another --out')
    os.makedirs(root, exist_ok=True)
    with atomic_write(osp.join(root, 'meta.json')) as f:
        json.dump(dict(meta, folders=list(OWN_FOLDERS), complete=False), f, indent=2)
    for sub in folders:  # start from empty folders so no stale file survives
        shutil.rmtree(osp.join(root, sub), ignore_errors=True)


def generate_synthetic(root, seed=0, num_train=300, num_test=100, pool_size=2000,
                       size=96, pool_mix=None, progress=True):
    """Generates (or reuses) the synthetic data under ``root``; returns its meta dict."""
    meta = dict(version=FORMAT_VERSION, seed=seed, num_train=num_train, num_test=num_test,
                pool_size=pool_size, size=size,
                pool_mix=OpenWorldPoolGenerator(size, pool_mix).mix)
    meta_path = osp.join(root, 'meta.json')
    own = _own_meta(root) if osp.isdir(root) else None
    if own is not None and own.get('complete', True) and {
            k: v for k, v in own.items() if k not in ('complete', 'folders')} == meta:
        return meta
    _claim(root, meta)

    rooms = RoomSceneGenerator(size)
    for split, count in (('train', num_train), ('test', num_test)):
        img_dir = osp.join(root, 'scenes', 'img_dir', split)
        ann_dir = osp.join(root, 'scenes', 'ann_dir', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in tqdm(range(count), desc=f'scenes/{split}', disable=not progress):
            img, lab = rooms(np.random.default_rng([seed, SPLIT_IDS[split], i]))
            _save_png(osp.join(img_dir, f'{i:05d}.png'), img)
            _save_png(osp.join(ann_dir, f'{i:05d}.png'), lab)

    pool = OpenWorldPoolGenerator(size, pool_mix)
    pool_root = osp.join(root, 'pool')
    rows = []
    for i in tqdm(range(pool_size), desc='pool', disable=not progress):
        img, name = pool(seed, i)
        rel = osp.join(name, f'{i:06d}.png')
        os.makedirs(osp.join(pool_root, name), exist_ok=True)
        _save_png(osp.join(pool_root, rel), img)
        rows.append((i, rel, name))
    with atomic_write(osp.join(pool_root, 'pool.csv'), newline='') as f:
        writer = csv.writer(f)
        writer.writerow(('index', 'filename', 'subdomain'))
        writer.writerows(rows)

    with atomic_write(meta_path) as f:
        json.dump(dict(meta, folders=list(OWN_FOLDERS), complete=True), f, indent=2)
    return meta
