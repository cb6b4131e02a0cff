"""Convert NYUv2's official labelled .mat into the toolkit layout with 13 classes.

    python tools/dataset_converters/nyuv2.py nyu_depth_v2_labeled.mat splits.mat \\
        --class40-mapping classMapping40.mat --class13-mapping class13Mapping.mat \\
        --out data/nyuv2

Writes ``image/{train,test}/%05d.png`` (RGB) and ``seg13/{train,test}/%05d.png``
(0..12, 255 = unlabelled), named by the 1-based index of ``splits.mat``, and
copies ``splits.mat`` beside them. The 894 raw classes go to 40 through
``classMapping40.mat`` (``mapClass``), then to 13 through ``class13Mapping.mat``;
both files come with the NYUv2 toolkit (and DFAD's copy of it).

The official file is MATLAB v7.3 (HDF5) and needs ``h5py``; a v5 .mat is read
with scipy. Images are read one at a time from an HDF5 file.
"""
import argparse
import os
import os.path as osp
import shutil

import numpy as np

HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'
NUM_RAW_CLASSES = 894


def is_hdf5(path):
    """MATLAB v7.3 files are HDF5 with a 512-byte user block."""
    with open(path, 'rb') as f:
        head = f.read(1024 + len(HDF5_SIGNATURE))
    return any(head[o:o + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for o in (0, 512, 1024))


def _numeric_vectors(obj):
    """Every numeric array inside a loadmat value (structs and cells included)."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.names:
            for item in obj.ravel():
                for name in obj.dtype.names:
                    yield from _numeric_vectors(item[name])
        elif obj.dtype == object:
            for item in obj.ravel():
                yield from _numeric_vectors(item)
        elif np.issubdtype(obj.dtype, np.number):
            yield obj
    elif isinstance(obj, np.void) and obj.dtype.names:
        for name in obj.dtype.names:
            yield from _numeric_vectors(obj[name])


def load_mapping(path, length, max_value, key=None):
    """A class mapping of ``length`` entries with values 1..max_value from a
    .mat file: the variable ``key`` if present, else the only numeric vector of
    that length found in the file."""
    from scipy.io import loadmat
    if not osp.isfile(path):
        raise FileNotFoundError(f'mapping file {path!r} does not exist')
    try:
        mat = loadmat(path)
    except Exception as e:
        raise ValueError(f'cannot read the mapping file {path!r}: {e}') from e
    values = [mat[key]] if key and key in mat else [v for k, v in mat.items()
                                                     if not k.startswith('__')]
    found = [v.reshape(-1) for obj in values for v in _numeric_vectors(obj) if v.size == length]
    if len(found) != 1:
        raise ValueError(f'mapping file {path!r}: expected one vector of {length} class ids, '
                         f'found {len(found)}')
    mapping = found[0].astype(np.int64)
    if mapping.min() < 1 or mapping.max() > max_value:
        raise ValueError(f'mapping file {path!r}: ids must be in 1..{max_value}, got '
                         f'{mapping.min()}..{mapping.max()}')
    return mapping


def raw_to_13_lut(map40, map13):
    """Look-up table raw class (0 = unlabelled, 1..894) -> 0..12, 255."""
    lut40 = np.concatenate([[0], map40])
    lut13 = np.concatenate([[0], map13])
    return ((lut13[lut40] - 1) % 256).astype(np.uint8)


class LabelledMat:
    """Random access to ``images`` (H, W, 3) and ``labels`` (H, W) of the
    labelled .mat, by 0-based index, whatever its MATLAB version."""

    def __init__(self, path):
        if not osp.isfile(path):
            raise FileNotFoundError(f'labelled .mat {path!r} does not exist')
        self.path = path
        if is_hdf5(path):
            try:
                import h5py
            except ImportError as e:
                raise RuntimeError(f'{path!r} is a MATLAB v7.3 (HDF5) file: install h5py '
                                   '(pip install h5py) to read it') from e
            self._h5 = h5py.File(path, 'r')
            self._check(self._h5)
            # h5py shows MATLAB's column-major arrays with reversed axes
            self.images = lambda i: np.asarray(self._h5['images'][i]).transpose(2, 1, 0)
            self.labels = lambda i: np.asarray(self._h5['labels'][i]).T
            self.num = self._h5['images'].shape[0]
        else:
            from scipy.io import loadmat
            try:
                mat = loadmat(path, variable_names=['images', 'labels'])
            except Exception as e:
                raise ValueError(f'cannot read {path!r}: {e}') from e
            self._h5 = None
            self._check(mat)
            self.images = lambda i: mat['images'][..., i]
            self.labels = lambda i: mat['labels'][..., i]
            self.num = mat['images'].shape[-1]

    def _check(self, container):
        missing = [k for k in ('images', 'labels') if k not in container]
        if missing:
            raise KeyError(f'{self.path!r} has no {missing}: not the labelled NYUv2 .mat')

    def close(self):
        if self._h5 is not None:
            self._h5.close()


def convert(mat_path, splits_path, map40_path, map13_path, out, progress=True):
    """Write the toolkit layout under ``out``; returns {split: count}."""
    import mmcv
    from tqdm import tqdm

    from mmseg_dfss.datasets.nyuv2 import load_nyuv2_split_indices

    if not osp.isfile(splits_path):
        raise FileNotFoundError(f'splits file {splits_path!r} does not exist')
    lut = raw_to_13_lut(load_mapping(map40_path, NUM_RAW_CLASSES, 40, key='mapClass'),
                        load_mapping(map13_path, 40, 13))
    splits = {s: load_nyuv2_split_indices(splits_path, s) for s in ('train', 'test')}
    data = LabelledMat(mat_path)
    counts = {}
    try:
        for split, indices in splits.items():
            if max(indices) > data.num:
                raise ValueError(f'{splits_path!r}: {split} index {max(indices)} is beyond the '
                                 f'{data.num} images of {mat_path!r}')
            for sub in ('image', 'seg13'):
                os.makedirs(osp.join(out, sub, split), exist_ok=True)
            for idx in tqdm(indices, desc=f'NYUv2 {split}', disable=not progress):
                img, raw = data.images(idx - 1), data.labels(idx - 1)
                if img.ndim != 3 or img.shape[2] != 3 or raw.shape != img.shape[:2]:
                    raise ValueError(f'{mat_path!r}, image {idx}: image {img.shape} and label '
                                     f'{raw.shape} do not match (expected H x W x 3 and H x W)')
                if raw.min() < 0 or raw.max() > NUM_RAW_CLASSES:
                    raise ValueError(f'{mat_path!r}, image {idx}: label values '
                                     f'{raw.min()}..{raw.max()} outside 0..{NUM_RAW_CLASSES}')
                name = f'{idx:05d}.png'
                mmcv.imwrite(np.ascontiguousarray(img[..., ::-1]).astype(np.uint8),
                             osp.join(out, 'image', split, name))
                mmcv.imwrite(lut[raw.astype(np.int64)], osp.join(out, 'seg13', split, name))
            counts[split] = len(indices)
    finally:
        data.close()
    if osp.abspath(splits_path) != osp.abspath(osp.join(out, 'splits.mat')):
        shutil.copyfile(splits_path, osp.join(out, 'splits.mat'))
    return counts


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('mat', help='nyu_depth_v2_labeled.mat (the official labelled file)')
    p.add_argument('splits', help='splits.mat (trainNdxs / testNdxs, 1-based)')
    p.add_argument('--class40-mapping', required=True,
                   help='classMapping40.mat: 894 raw classes -> 40 (variable mapClass)')
    p.add_argument('--class13-mapping', required=True,
                   help='class13Mapping.mat: 40 classes -> 13')
    p.add_argument('--out', default='data/nyuv2', help='output folder (toolkit layout)')
    p.add_argument('--no-progress', action='store_true')
    return p.parse_args()


def main():
    args = parse_args()
    try:
        counts = convert(args.mat, args.splits, args.class40_mapping, args.class13_mapping,
                         args.out, progress=not args.no_progress)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise SystemExit(f'error: {e}')
    print(f'NYUv2 (13 classes, toolkit layout) in {args.out}: '
          + ', '.join(f'{k} {v}' for k, v in counts.items()))


if __name__ == '__main__':
    main()
