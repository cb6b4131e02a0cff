import os
import os.path as osp

import numpy as np
import pytest
from dataset_layouts import (NYU_DFAD_VALUES, NYU_TOOLKIT_VALUES, SIZE, label_pattern,
                             make_nyuv2_dfad, make_nyuv2_toolkit, write_splits_mat)
from mmengine.config import Config
from mmseg.registry import DATASETS

from mmseg_dfss.datasets import NYUv2Dataset
from mmseg_dfss.datasets.nyuv2 import NYUV2_CLASSES

LOAD = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]


def expected_dfad(raw):
    """DFAD's mapping written out: 0 -> 255, k -> k - 1."""
    return np.where(raw == 0, 255, raw.astype(np.int64) - 1)


def test_toolkit_layout_reads_split_and_labels(tmp_path):
    root = make_nyuv2_toolkit(str(tmp_path))
    train = NYUv2Dataset(data_root=root, split='train', pipeline=LOAD)
    test = NYUv2Dataset(data_root=root, split='test', pipeline=LOAD)
    assert train.layout == 'toolkit' and not train.reduce_zero_label
    assert (len(train), len(test)) == (3, 2)
    assert train.metainfo['classes'] == NYUV2_CLASSES and len(NYUV2_CLASSES) == 13
    assert len(train.metainfo['palette']) == 13
    assert [osp.basename(train.get_data_info(i)['img_path']) for i in range(3)] == [
        '00001.png', '00003.png', '00004.png']
    sample = train[1]
    assert sample['img'].shape == (*SIZE, 3)
    np.testing.assert_array_equal(sample['gt_seg_map'],
                                  label_pattern(NYU_TOOLKIT_VALUES, shift=3))
    assert set(np.unique(sample['gt_seg_map'])) == set(NYU_TOOLKIT_VALUES)


@pytest.mark.parametrize('splits_at', ['nyuv2-meta-data', '.'])
def test_dfad_layout_follows_splits_mat_and_maps_zero_to_ignore(tmp_path, splits_at):
    root = make_nyuv2_dfad(str(tmp_path), train=(1, 3, 4), test=(2, 5), splits_at=splits_at)
    train = NYUv2Dataset(data_root=root, split='train', pipeline=LOAD)
    test = NYUv2Dataset(data_root=root, split='test', pipeline=LOAD)
    assert train.layout == 'dfad' and train.reduce_zero_label
    assert (len(train), len(test)) == (3, 2)
    # image <i-1>.png pairs with label new_nyu_class13_<i:04d>.png, in splits.mat order
    info = test.get_data_info(1)
    assert osp.basename(info['img_path']) == '4.png'
    assert info['seg_map_path'].endswith(osp.join('test_labels_13', 'new_nyu_class13_0005.png'))
    sample = test[1]
    raw = label_pattern(NYU_DFAD_VALUES, shift=5)
    np.testing.assert_array_equal(sample['gt_seg_map'], expected_dfad(raw))
    assert set(np.unique(sample['gt_seg_map'])) == set(range(13)) | {255}


def test_layout_argument_wins_and_both_layouts_are_ambiguous(tmp_path):
    root = str(tmp_path)
    make_nyuv2_toolkit(root, train=(1, 2), test=(3,))
    make_nyuv2_dfad(root, train=(1, 2, 4), test=(3,))
    with pytest.raises(ValueError, match="both layouts.*layout="):
        NYUv2Dataset(data_root=root)
    assert len(NYUv2Dataset(data_root=root, layout='toolkit')) == 2
    assert len(NYUv2Dataset(data_root=root, layout='dfad')) == 3


def test_shipped_config_builds_with_only_data_root_changed(tmp_path, repo_root):
    root = make_nyuv2_dfad(str(tmp_path))
    cfg = Config.fromfile(osp.join(repo_root, 'configs/_base_/datasets/nyuv2.py'))
    assert cfg.dfad_data_preprocessor.mean == [127.5] * 3 and cfg.dfad_data_preprocessor.std == [127.5] * 3
    assert cfg.val_evaluator.type == 'IoUMetric'
    train_cfg = dict(cfg.train_dataloader.dataset, data_root=root)
    test_cfg = dict(cfg.test_dataloader.dataset, data_root=root)
    train, test = DATASETS.build(train_cfg), DATASETS.build(test_cfg)
    assert (len(train), len(test)) == (3, 2)
    packed = train[0]
    assert tuple(packed['inputs'].shape) == (3, 128, 128)
    assert tuple(packed['data_samples'].gt_sem_seg.data.shape) == (1, 128, 128)
    packed = test[0]
    # test: short side 256 for the network, labels kept at their own size
    assert min(packed['inputs'].shape[1:]) == 256
    assert tuple(packed['data_samples'].gt_sem_seg.data.shape[1:]) == SIZE
    assert packed['data_samples'].metainfo['ori_shape'] == SIZE


def test_no_known_layout_names_the_folder(tmp_path):
    os.makedirs(tmp_path / 'images')
    with pytest.raises(FileNotFoundError, match=f'no known layout under .*{tmp_path}'):
        NYUv2Dataset(data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        NYUv2Dataset(data_root=str(tmp_path / 'absent'))


def test_missing_splits_file_names_the_places_looked(tmp_path):
    root = make_nyuv2_dfad(str(tmp_path))
    os.remove(osp.join(root, 'nyuv2-meta-data', 'splits.mat'))
    with pytest.raises(FileNotFoundError, match=r'splits file not found.*'
                       r'nyuv2-meta-data/splits\.mat.*splits\.mat'):
        NYUv2Dataset(data_root=root)


def test_splits_file_without_the_split_names_the_file(tmp_path):
    root = make_nyuv2_dfad(str(tmp_path))
    from scipy.io import savemat
    path = osp.join(root, 'nyuv2-meta-data', 'splits.mat')
    savemat(path, dict(trainNdxs=np.array([[1.0]])))
    with pytest.raises(KeyError, match=f"{path}.*'testNdxs'"):
        NYUv2Dataset(data_root=root, split='test')
    with open(path, 'wb') as f:
        f.write(b'not a mat file')
    with pytest.raises(ValueError, match=f'cannot read the splits file .*{path}'):
        NYUv2Dataset(data_root=root)


def test_dfad_missing_label_names_the_file(tmp_path):
    root = make_nyuv2_dfad(str(tmp_path))
    missing = osp.join(root, 'nyuv2-meta-data', 'train_labels_13', 'new_nyu_class13_0003.png')
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=r'(?s)labels listed in .*splits\.mat.*'
                       r'\(1 of 3\).*new_nyu_class13_0003\.png'):
        NYUv2Dataset(data_root=root, split='train')
    # an index in splits.mat with no image
    write_splits_mat(osp.join(root, 'nyuv2-meta-data', 'splits.mat'), [1, 4, 9], [2, 5])
    with pytest.raises(FileNotFoundError, match=r'(?s)images listed .*IMAGE/8\.png'):
        NYUv2Dataset(data_root=root, split='train')


def test_toolkit_unpaired_files_name_the_file(tmp_path):
    root = make_nyuv2_toolkit(str(tmp_path))
    os.remove(osp.join(root, 'seg13', 'train', '00003.png'))
    with pytest.raises(FileNotFoundError,
                       match=r'(?s)images without a label.*image/train/00003\.png'):
        NYUv2Dataset(data_root=root, split='train')
    os.remove(osp.join(root, 'image', 'test', '00005.png'))
    with pytest.raises(FileNotFoundError,
                       match=r'(?s)labels without an image.*seg13/test/00005\.png'):
        NYUv2Dataset(data_root=root, split='test')


def test_toolkit_missing_split_folder_names_it(tmp_path):
    root = make_nyuv2_toolkit(str(tmp_path))
    os.rename(osp.join(root, 'seg13', 'test'), osp.join(root, 'seg13', 'val'))
    with pytest.raises(FileNotFoundError, match=r"folder '.*seg13/test' does not exist"):
        NYUv2Dataset(data_root=root, split='test')


def test_bad_arguments_are_refused(tmp_path):
    root = make_nyuv2_toolkit(str(tmp_path))
    with pytest.raises(ValueError, match='split'):
        NYUv2Dataset(data_root=root, split='val')
    with pytest.raises(ValueError, match='layout'):
        NYUv2Dataset(data_root=root, layout='segnet')
    with pytest.raises(ValueError, match='reduce_zero_label'):
        NYUv2Dataset(data_root=root, reduce_zero_label=True)
    with pytest.raises(ValueError, match='data_prefix is not used'):
        NYUv2Dataset(data_root=root, data_prefix=dict(img_path='x'))
