import os
import os.path as osp

import numpy as np
import pytest
from dataset_layouts import CAMVID_VALUES, SIZE, label_pattern, make_camvid
from mmengine.config import Config
from mmseg.registry import DATASETS

from mmseg_dfss.datasets import CamVidDataset
from mmseg_dfss.datasets.camvid import CAMVID_CLASSES

LOAD = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]


def test_segnet_layout_reads_every_split_and_void_becomes_ignore(tmp_path):
    root = make_camvid(str(tmp_path))
    sets = {s: CamVidDataset(data_root=root, split=s, pipeline=LOAD)
            for s in ('train', 'val', 'test')}
    assert {s: len(d) for s, d in sets.items()} == {'train': 3, 'val': 2, 'test': 2}
    train = sets['train']
    assert train.metainfo['classes'] == CAMVID_CLASSES and len(CAMVID_CLASSES) == 11
    assert len(train.metainfo['palette']) == 11
    info = train.get_data_info(2)
    assert info['img_path'] == osp.join(root, 'train', '0001TP_train_002.png')
    assert info['seg_map_path'] == osp.join(root, 'trainannot', '0001TP_train_002.png')
    raw = label_pattern(CAMVID_VALUES, shift=2)
    gt = train[2]['gt_seg_map']
    np.testing.assert_array_equal(gt, np.where(raw == 11, 255, raw))
    assert set(np.unique(gt)) == set(range(11)) | {255}


def test_class_subset_composes_with_void(tmp_path):
    root = make_camvid(str(tmp_path))
    ds = CamVidDataset(data_root=root, split='val', pipeline=LOAD,
                       metainfo=dict(classes=('Road', 'Car')))
    raw = label_pattern(CAMVID_VALUES, shift=0)
    expected = np.full(SIZE, 255)
    expected[raw == 3] = 0  # Road
    expected[raw == 8] = 1  # Car
    np.testing.assert_array_equal(ds[0]['gt_seg_map'], expected)
    assert ds.metainfo['palette'] == [[128, 64, 128], [64, 0, 128]]


def test_shipped_config_builds_with_only_data_root_changed(tmp_path, repo_root):
    root = make_camvid(str(tmp_path))
    cfg = Config.fromfile(osp.join(repo_root, 'configs/_base_/datasets/camvid.py'))
    assert cfg.dfad_data_preprocessor.size == (128, 128)
    train = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=root))
    test = DATASETS.build(dict(cfg.test_dataloader.dataset, data_root=root))
    assert (len(train), len(test)) == (3, 2)
    packed = train[0]
    assert tuple(packed['inputs'].shape) == (3, 128, 128)
    seg = packed['data_samples'].gt_sem_seg.data
    assert int(seg.max()) == 255 and int(seg[seg != 255].max()) <= 10
    assert min(test[0]['inputs'].shape[1:]) == 256


def test_missing_annotation_folder_names_it(tmp_path):
    root = make_camvid(str(tmp_path))
    os.rename(osp.join(root, 'testannot'), osp.join(root, 'test_labels'))
    with pytest.raises(FileNotFoundError, match=r"folder '.*/testannot' does not exist"):
        CamVidDataset(data_root=root, split='test')


def test_unpaired_files_name_the_file(tmp_path):
    root = make_camvid(str(tmp_path))
    os.remove(osp.join(root, 'trainannot', '0001TP_train_001.png'))
    with pytest.raises(FileNotFoundError,
                       match=r'(?s)images without a label.*train/0001TP_train_001\.png'):
        CamVidDataset(data_root=root, split='train')
    os.remove(osp.join(root, 'val', '0001TP_val_000.png'))
    with pytest.raises(FileNotFoundError,
                       match=r'(?s)labels without an image.*valannot/0001TP_val_000\.png'):
        CamVidDataset(data_root=root, split='val')


def test_empty_split_and_bad_split_are_refused(tmp_path):
    root = make_camvid(str(tmp_path), counts=(('train', 1),))
    os.makedirs(osp.join(root, 'test'))
    os.makedirs(osp.join(root, 'testannot'))
    with pytest.raises(FileNotFoundError, match=r"no \*\.png images in '.*/test'"):
        CamVidDataset(data_root=root, split='test')
    with pytest.raises(ValueError, match='split must be one of'):
        CamVidDataset(data_root=root, split='trainval')
