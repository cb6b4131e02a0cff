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
"""
import csv
import json
import os
import os.path as osp
import shutil

import numpy as np
from PIL import Image
from tqdm import tqdm

from .pool import OpenWorldPoolGenerator
from .rooms import RoomSceneGenerator

SPLIT_IDS = {'train': 0, 'test': 1}
FORMAT_VERSION = 1


def _save_png(path, array):
    tmp = path + '.tmp.png'
    Image.fromarray(array).save(tmp)
    os.replace(tmp, path)


def generate_synthetic(root, seed=0, num_train=300, num_test=100, pool_size=2000,
                       size=96, pool_mix=None, progress=True):
    """Generates (or reuses) the synthetic data under ``root``; returns its meta dict."""
    meta = dict(version=FORMAT_VERSION, seed=seed, num_train=num_train, num_test=num_test,
                pool_size=pool_size, size=size,
                pool_mix=OpenWorldPoolGenerator(size, pool_mix).mix)
    meta_path = osp.join(root, 'meta.json')
    if osp.isfile(meta_path):
        with open(meta_path) as f:
            if json.load(f) == meta:
                return meta
    # new or changed arguments: start from empty folders so no stale file survives
    if osp.isfile(meta_path):
        os.remove(meta_path)
    for sub in ('scenes', 'pool'):
        shutil.rmtree(osp.join(root, sub), ignore_errors=True)

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
    with open(osp.join(pool_root, 'pool.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(('index', 'filename', 'subdomain'))
        writer.writerows(rows)

    with open(meta_path, 'w') as f:
        json.dump(meta, f, indent=2)
    return meta
