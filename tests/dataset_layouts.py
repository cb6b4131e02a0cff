"""Tiny on-disk layouts of the real datasets (NYUv2 both layouts, CamVid, COCO),
fabricated by the tests: a few small images each, labels with known values."""
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

SIZE = (24, 32)  # H, W


def write_png(path, array):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path)
    return path


def rgb(seed, size=SIZE):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def label_pattern(values, size=SIZE, shift=0):
    """A label map that cycles through ``values`` (every value is present)."""
    values = np.asarray(values, np.uint8)
    flat = values[(np.arange(size[0] * size[1]) + shift) % len(values)]
    return flat.reshape(size)


NYU_TOOLKIT_VALUES = list(range(13)) + [255]
NYU_DFAD_VALUES = list(range(14))  # 0 = unlabelled, 1..13


def make_nyuv2_toolkit(root, train=(1, 3, 4), test=(2, 5)):
    """``image/{split}/%05d.png`` + ``seg13/{split}/%05d.png`` (0..12, 255)."""
    for split, indices in (('train', train), ('test', test)):
        for i in indices:
            write_png(osp.join(root, 'image', split, f'{i:05d}.png'), rgb(i))
            write_png(osp.join(root, 'seg13', split, f'{i:05d}.png'),
                      label_pattern(NYU_TOOLKIT_VALUES, shift=i))
    return root


def write_splits_mat(path, train, test):
    from scipy.io import savemat
    os.makedirs(osp.dirname(path), exist_ok=True)
    # as in the official file: 1-based column vectors
    savemat(path, dict(trainNdxs=np.array(train, np.float64).reshape(-1, 1),
                       testNdxs=np.array(test, np.float64).reshape(-1, 1)))
    return path


def make_nyuv2_dfad(root, train=(1, 3, 4), test=(2, 5), splits_at='nyuv2-meta-data'):
    """DFAD's layout: ``480_640/IMAGE/<i-1>.png``,
    ``nyuv2-meta-data/<split>_labels_13/new_nyu_class13_<i:04d>.png`` (0..13) and
    ``splits.mat`` under ``splits_at`` (relative to root)."""
    for split, indices in (('train', train), ('test', test)):
        for i in indices:
            write_png(osp.join(root, '480_640', 'IMAGE', f'{i - 1}.png'), rgb(i))
            write_png(osp.join(root, 'nyuv2-meta-data', f'{split}_labels_13',
                               f'new_nyu_class13_{i:04d}.png'),
                      label_pattern(NYU_DFAD_VALUES, shift=i))
    write_splits_mat(osp.join(root, splits_at, 'splits.mat'), train, test)
    return root


CAMVID_VALUES = list(range(12))  # 11 = void


def make_camvid(root, counts=(('train', 3), ('val', 2), ('test', 2))):
    """SegNet's layout: ``<split>/*.png`` + ``<split>annot/*.png`` (0..11)."""
    for split, n in counts:
        for k in range(n):
            name = f'0001TP_{split}_{k:03d}.png'
            write_png(osp.join(root, split, name), rgb(100 + k))
            write_png(osp.join(root, split + 'annot', name), label_pattern(CAMVID_VALUES, shift=k))
    return root


COCO_CATEGORIES = [dict(id=1, name='person'), dict(id=3, name='car'), dict(id=62, name='chair'),
                   dict(id=65, name='bed')]


def make_coco(root, write_images=True):
    """``annotations/instances_train2017.json`` + ``train2017/*.jpg`` with five
    images; instances (non-crowd) per image id: 10: 0, 20: person x1,
    30: chair x2 + person x1 (crowd), 40: car x3, 50: bed x1 + chair x1."""
    anns = []

    def ann(image_id, cat, crowd=0):
        anns.append(dict(id=len(anns) + 1, image_id=image_id, category_id=cat, iscrowd=crowd,
                         bbox=[0, 0, 4, 4], area=16, segmentation=[[0, 0, 4, 0, 4, 4]]))

    ann(20, 1)
    ann(30, 62), ann(30, 62), ann(30, 1, crowd=1)
    ann(40, 3), ann(40, 3), ann(40, 3)
    ann(50, 65), ann(50, 62)
    # listed out of id order on purpose: the pool is ordered by image id
    images = [dict(id=i, file_name=f'{i:012d}.jpg', height=SIZE[0], width=SIZE[1])
              for i in (30, 10, 50, 20, 40)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    with open(osp.join(root, 'annotations', 'instances_train2017.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=COCO_CATEGORIES), f)
    if write_images:
        for im in images:
            path = osp.join(root, 'train2017', im['file_name'])
            os.makedirs(osp.dirname(path), exist_ok=True)
            Image.fromarray(rgb(im['id'])).save(path, quality=95)
    return root
