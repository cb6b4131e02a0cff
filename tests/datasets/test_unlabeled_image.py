import os
import os.path as osp

import pytest
from PIL import Image
from dataset_layouts import rgb, write_png

from mmseg_dfss.datasets import UnlabeledImageDataset

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='RandomCrop', crop_size=(16, 16)),
            dict(type='PackSegInputs')]


def make_folder(root):
    """A VOC/ImageNet-like folder: images in nested class folders plus files
    that are no images."""
    for k, name in enumerate(['b/img_2.png', 'a/deep/img_0.png']):
        write_png(osp.join(root, name), rgb(k))
    for k, name in enumerate(['a/img_1.JPG', 'top.jpeg']):
        Image.fromarray(rgb(k)).save(osp.join(root, name), 'JPEG')
    with open(osp.join(root, 'a', 'notes.txt'), 'w') as f:
        f.write('not an image')
    return root


def test_folder_is_scanned_recursively_in_sorted_order(tmp_path):
    root = make_folder(str(tmp_path / 'voc'))
    ds = UnlabeledImageDataset(data_root=root)
    rel = [osp.relpath(ds.get_data_info(i)['img_path'], root) for i in range(len(ds))]
    assert rel == ['a/deep/img_0.png', 'a/img_1.JPG', 'b/img_2.png', 'top.jpeg']
    assert [ds.get_data_info(i)['pool_index'] for i in range(4)] == [0, 1, 2, 3]


def test_samples_pass_mmseg_transforms_without_labels(tmp_path):
    root = make_folder(str(tmp_path / 'voc'))
    ds = UnlabeledImageDataset(data_root=root, pipeline=PIPELINE)
    packed = ds[1]
    assert tuple(packed['inputs'].shape) == (3, 16, 16)
    assert 'gt_sem_seg' not in packed['data_samples']
    assert packed['data_samples'].metainfo['img_path'].endswith('img_1.JPG')


def test_list_file_gives_the_images_and_their_order(tmp_path):
    root = make_folder(str(tmp_path / 'voc'))
    with open(osp.join(root, 'list.txt'), 'w') as f:
        f.write('top.jpeg\n\nb/img_2.png\n')
    ds = UnlabeledImageDataset(data_root=root, ann_file='list.txt')
    assert [ds.get_data_info(i)['img_path'] for i in range(len(ds))] == [
        osp.join(root, 'top.jpeg'), osp.join(root, 'b/img_2.png')]


def test_missing_or_empty_sources_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"image folder '{tmp_path}/absent' does not"):
        UnlabeledImageDataset(data_prefix=dict(img_path=str(tmp_path / 'absent')))
    with pytest.raises(FileNotFoundError, match=r"list file '.*/list\.txt' does not exist"):
        UnlabeledImageDataset(data_root=str(tmp_path), ann_file='list.txt')
    os.makedirs(tmp_path / 'empty')
    with open(tmp_path / 'empty' / 'readme.txt', 'w') as f:
        f.write('x')
    with pytest.raises(ValueError, match=r"no images found in '.*/empty/?'"):
        UnlabeledImageDataset(data_root=str(tmp_path / 'empty'))
