import importlib.util
import os
import os.path as osp
import sys

import numpy as np
import pytest
from dataset_layouts import write_splits_mat
from PIL import Image
from scipy.io import savemat

from mmseg_dfss.datasets import NYUv2Dataset

N, H, W = 6, 12, 16
TRAIN, TEST = [1, 3, 4, 6], [2, 5]


def load_converter(repo_root):
    spec = importlib.util.spec_from_file_location(
        'nyuv2_converter', osp.join(repo_root, 'tools/dataset_converters/nyuv2.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected_13(raw):
    """The toolkit's chain written out for the fabricated mappings below:
    raw k -> 40-class ((k-1) % 40) + 1 -> 13-class ((c-1) % 13) + 1 -> minus 1;
    raw 0 (unlabelled) -> 255."""
    c40 = (raw.astype(np.int64) - 1) % 40 + 1
    c13 = (c40 - 1) % 13 + 1
    return np.where(raw == 0, 255, c13 - 1)


def fabricate_inputs(root):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    labels = rng.integers(0, 895, (N, H, W)).astype(np.uint16)
    labels[:, 0, :] = 0  # some unlabelled pixels
    labels[0, 1, :4] = [0, 13, 14, 894]
    # MATLAB's order: H x W x 3 x N and H x W x N
    savemat(osp.join(root, 'labeled.mat'), dict(images=images.transpose(1, 2, 3, 0),
                                                labels=labels.transpose(1, 2, 0)))
    write_splits_mat(osp.join(root, 'splits.mat'), TRAIN, TEST)
    savemat(osp.join(root, 'classMapping40.mat'),
            dict(mapClass=((np.arange(894) % 40) + 1).reshape(1, -1).astype(np.float64),
                 className=np.array(['c%d' % i for i in range(40)], dtype=object)))
    # the toolkit's class13Mapping.mat holds a struct; the 40 -> 13 ids are one field
    savemat(osp.join(root, 'class13Mapping.mat'), dict(classMapping13=dict(
        labelName=np.array(['n%d' % i for i in range(13)], dtype=object),
        labels13=((np.arange(40) % 13) + 1).reshape(1, -1).astype(np.float64))))
    return images, labels


def mapping_args(root):
    return ('--class40-mapping', osp.join(root, 'classMapping40.mat'),
            '--class13-mapping', osp.join(root, 'class13Mapping.mat'))


def test_v5_mat_converts_to_the_toolkit_layout_that_nyuv2dataset_reads(tmp_path, tool):
    root, out = str(tmp_path), str(tmp_path / 'nyuv2')
    images, labels = fabricate_inputs(root)
    proc = tool('tools/dataset_converters/nyuv2.py', osp.join(root, 'labeled.mat'),
                osp.join(root, 'splits.mat'), *mapping_args(root), '--out', out, '--no-progress')
    assert 'train 4, test 2' in proc.stdout
    assert sorted(os.listdir(osp.join(out, 'image', 'train'))) == [
        '00001.png', '00003.png', '00004.png', '00006.png']
    assert osp.isfile(osp.join(out, 'splits.mat'))
    for split, indices in (('train', TRAIN), ('test', TEST)):
        for i in indices:
            img = np.asarray(Image.open(osp.join(out, 'image', split, f'{i:05d}.png')))
            np.testing.assert_array_equal(img, images[i - 1])
            seg = np.asarray(Image.open(osp.join(out, 'seg13', split, f'{i:05d}.png')))
            np.testing.assert_array_equal(seg, expected_13(labels[i - 1]))
    seg = np.asarray(Image.open(osp.join(out, 'seg13', 'train', '00001.png')))
    assert seg[1, :4].tolist() == [255, 12, 0, 0]  # 894 -> 14 -> 1 -> 0
    ds = NYUv2Dataset(data_root=out, split='test')
    assert ds.layout == 'toolkit' and len(ds) == 2


def test_hdf5_mat_is_read_image_by_image(tmp_path, repo_root):
    h5py = pytest.importorskip('h5py')
    root, out = str(tmp_path), str(tmp_path / 'nyuv2')
    images, labels = fabricate_inputs(root)
    # MATLAB v7.3: HDF5 after a 512-byte user block, axes reversed as h5py shows them
    with h5py.File(osp.join(root, 'labeled73.mat'), 'w', userblock_size=512) as f:
        f['images'] = images.transpose(0, 3, 2, 1)
        f['labels'] = labels.transpose(0, 2, 1)
    conv = load_converter(repo_root)
    assert conv.is_hdf5(osp.join(root, 'labeled73.mat'))
    conv.convert(osp.join(root, 'labeled73.mat'), osp.join(root, 'splits.mat'),
                 osp.join(root, 'classMapping40.mat'), osp.join(root, 'class13Mapping.mat'),
                 out, progress=False)
    img = np.asarray(Image.open(osp.join(out, 'image', 'test', '00005.png')))
    np.testing.assert_array_equal(img, images[4])
    seg = np.asarray(Image.open(osp.join(out, 'seg13', 'test', '00005.png')))
    np.testing.assert_array_equal(seg, expected_13(labels[4]))


def test_hdf5_without_h5py_says_what_to_install(tmp_path, repo_root, monkeypatch):
    path = str(tmp_path / 'nyu_depth_v2_labeled.mat')
    with open(path, 'wb') as f:
        f.write(b'MATLAB 7.3 MAT-file'.ljust(512, b' ') + b'\x89HDF\r\n\x1a\n' + bytes(64))
    conv = load_converter(repo_root)
    monkeypatch.setitem(sys.modules, 'h5py', None)  # import h5py -> ImportError
    with pytest.raises(RuntimeError, match=f'{path}.*v7.3.*install h5py'):
        conv.LabelledMat(path)


def test_bad_inputs_name_the_file(tmp_path, repo_root):
    root = str(tmp_path)
    fabricate_inputs(root)
    conv = load_converter(repo_root)
    args = [osp.join(root, 'labeled.mat'), osp.join(root, 'splits.mat'),
            osp.join(root, 'classMapping40.mat'), osp.join(root, 'class13Mapping.mat'),
            osp.join(root, 'out')]
    bad = osp.join(root, 'bad40.mat')
    savemat(bad, dict(mapClass=np.full((1, 894), 41.0)))
    with pytest.raises(ValueError, match=f'{bad}.*1..40'):
        conv.convert(args[0], args[1], bad, args[3], args[4], progress=False)
    savemat(bad, dict(other=np.ones((1, 10))))
    with pytest.raises(ValueError, match=f'{bad}.*one vector of 894'):
        conv.convert(args[0], args[1], bad, args[3], args[4], progress=False)
    with pytest.raises(FileNotFoundError, match='absent.mat'):
        conv.convert(args[0], osp.join(root, 'absent.mat'), *args[2:], progress=False)
    write_splits_mat(osp.join(root, 'splits9.mat'), [1, 9], [2])
    with pytest.raises(ValueError, match=r'splits9\.mat.*index 9 is beyond the 6 images'):
        conv.convert(args[0], osp.join(root, 'splits9.mat'), *args[2:], progress=False)
    savemat(osp.join(root, 'depth_only.mat'), dict(depths=np.zeros((2, 2, 1))))
    with pytest.raises(KeyError, match=r"depth_only\.mat.*\['images', 'labels'\]"):
        conv.convert(osp.join(root, 'depth_only.mat'), *args[1:], progress=False)
