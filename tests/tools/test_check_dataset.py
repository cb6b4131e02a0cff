import importlib.util
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image
from dataset_layouts import (SIZE, make_camvid, make_coco, make_nyuv2_dfad, make_nyuv2_toolkit,
                             write_png)

NYU = 'configs/_base_/datasets/nyuv2.py'
CAMVID = 'configs/_base_/datasets/camvid.py'


@pytest.fixture(scope='module')
def check(repo_root):
    """Runs tools/check_dataset.py in this process: returns (exit code, stdout)."""
    spec = importlib.util.spec_from_file_location(
        'check_dataset', osp.join(repo_root, 'tools/check_dataset.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def run(capsys, config, *args):
        code = module.main([osp.join(repo_root, config), '--no-progress', *map(str, args)])
        return code, capsys.readouterr().out
    return run


def test_cli_on_a_good_layout_prints_counts_and_histogram(tmp_path, tool):
    root = make_nyuv2_toolkit(str(tmp_path))
    out = tool('tools/check_dataset.py', NYU, '--data-root', root, '--no-progress').stdout
    assert 'train: NYUv2Dataset' in out and 'val/test: NYUv2Dataset' in out
    assert 'layout: toolkit' in out
    assert 'samples: 3, labels: 3 (note: the official split has 795)' in out
    assert 'image sizes (WxH): 32x24: 3' in out
    counts = sum(np.bincount(np.asarray(Image.open(osp.join(root, 'seg13', 'train', f))).ravel(),
                             minlength=256) for f in os.listdir(osp.join(root, 'seg13', 'train')))
    printed = {int(line.split()[0]): int(line.split()[-2]) for line in out.split('== val')[0]
               .splitlines() if line.split() and line.split()[0].isdigit()}
    assert printed == {v: int(counts[v]) for v in list(range(13)) + [255]}
    assert out.rstrip().endswith('check_dataset: all datasets OK')


def test_dfad_layout_is_checked_after_its_mapping(tmp_path, capsys, check):
    root = make_nyuv2_dfad(str(tmp_path))
    code, out = check(capsys, NYU, '--data-root', root)
    assert code == 0, out
    assert 'layout: dfad' in out
    # file value 0 counts as ignored, 1..13 as classes 0..12: none is out of range
    assert 'PROBLEMS' not in out


def test_label_value_out_of_range_names_the_file(tmp_path, capsys, check):
    root = make_nyuv2_dfad(str(tmp_path))
    bad = osp.join(root, 'nyuv2-meta-data', 'test_labels_13', 'new_nyu_class13_0005.png')
    label = np.ones(SIZE, np.uint8)
    label[0, :3] = [14, 20, 255]
    write_png(bad, label)
    code, out = check(capsys, NYU, '--data-root', root)
    assert code == 1
    assert f'label values [14, 20] (file values) are no class of 0..12 nor ignored (255) ' \
           f"after the dataset's mapping: {bad}" in out
    assert 'PROBLEMS (1): label value out of range: 1' in out


def test_size_mismatch_and_colour_label_name_the_files(tmp_path, capsys, check):
    root = make_camvid(str(tmp_path))
    small = osp.join(root, 'trainannot', '0001TP_train_001.png')
    write_png(small, np.zeros((SIZE[0] - 4, SIZE[1]), np.uint8))
    colour = osp.join(root, 'trainannot', '0001TP_train_002.png')
    write_png(colour, np.zeros((*SIZE, 3), np.uint8))
    code, out = check(capsys, CAMVID, '--data-root', root, '--splits', 'train')
    assert code == 1
    assert f'label 32x20 (WxH) but image 32x24: {small}' in out
    assert f'label has 3 channels, expected a single-channel map of class ids ' \
           f'(a colour label?): {colour}' in out
    assert 'val/test' not in out


def test_unpaired_image_fails_the_build_naming_the_file(tmp_path, capsys, check):
    root = make_nyuv2_toolkit(str(tmp_path))
    os.remove(osp.join(root, 'seg13', 'test', '00002.png'))
    code, out = check(capsys, NYU, '--data-root', root)
    assert code == 1
    assert 'val/test: NYUv2Dataset\nPROBLEM: cannot build the dataset' in out
    assert osp.join(root, 'image', 'test', '00002.png') in out
    assert 'samples: 3' in out  # the train split was still checked


def test_missing_splits_file_is_reported(tmp_path, capsys, check):
    root = make_nyuv2_dfad(str(tmp_path))
    os.remove(osp.join(root, 'nyuv2-meta-data', 'splits.mat'))
    code, out = check(capsys, NYU, '--data-root', root, '--splits', 'train')
    assert code == 1
    assert 'splits file not found' in out and osp.join(root, 'splits.mat') in out


def test_pool_missing_and_unreadable_images_are_named(tmp_path, capsys, check):
    root = make_coco(str(tmp_path))
    os.remove(osp.join(root, 'train2017', '000000000040.jpg'))
    broken = osp.join(root, 'train2017', '000000000020.jpg')
    with open(broken, 'wb') as f:
        f.write(b'not a jpeg')
    code, out = check(capsys, 'configs/_base_/datasets/coco_pool.py', '--key', 'coco_pool',
                      '--data-root', root)
    assert code == 1
    assert 'samples: 5, labels: 0' in out
    assert f'missing image: {osp.join(root, "train2017", "000000000040.jpg")}' in out
    assert f'unreadable image: {broken}' in out


def test_empty_annotation_file_is_reported_by_name(tmp_path, capsys, check):
    root = make_coco(str(tmp_path))
    ann = osp.join(root, 'annotations', 'instances_train2017.json')
    open(ann, 'w').close()
    code, out = check(capsys, 'configs/_base_/datasets/coco_pool.py', '--key', 'coco_pool',
                      '--data-root', root)
    assert code == 1
    assert 'PROBLEM: cannot build the dataset' in out and f"'{ann}' is empty" in out


def test_wrapped_dataset_is_checked_without_building_the_wrapper(tmp_path, capsys, check,
                                                                repo_root):
    root = make_camvid(str(tmp_path))
    cfg = tmp_path / 'wrapped.py'
    cfg.write_text(
        f"_base_ = ['{osp.join(repo_root, CAMVID)}']\n"
        "train_dataloader = dict(dataset=dict(_delete_=True, type='NoSuchWrapper', "
        f"teacher='x', dataset=dict(type='CamVidDataset', data_root='{root}', split='val')))\n")
    code, out = check(capsys, str(cfg), '--splits', 'train')
    assert code == 0, out
    assert 'train: CamVidDataset' in out and 'samples: 2, labels: 2' in out
