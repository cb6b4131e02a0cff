import json
import os.path as osp

import pytest
from dataset_layouts import make_coco
from mmengine.config import Config
from mmseg.registry import DATASETS

from mmseg_dfss.datasets import COCOPoolDataset

ANN = 'annotations/instances_train2017.json'


def build(root, **kwargs):
    return COCOPoolDataset(data_root=root, ann_file=ANN, data_prefix=dict(img_path='train2017'),
                           **kwargs)


def ids(ds):
    return [ds.get_data_info(i)['coco_image_id'] for i in range(len(ds))]


def test_all_images_in_image_id_order_without_labels(tmp_path):
    root = make_coco(str(tmp_path))
    ds = build(root)
    assert ids(ds) == [10, 20, 30, 40, 50]
    info = ds.get_data_info(2)
    assert info['pool_index'] == 2
    assert info['img_path'] == osp.join(root, 'train2017', '000000000030.jpg')
    assert info['num_instances'] == 2  # the crowd region does not count
    assert 'seg_map_path' not in info


def test_min_instances_keeps_images_with_enough_objects(tmp_path):
    root = make_coco(str(tmp_path))
    assert ids(build(root, min_instances=1)) == [20, 30, 40, 50]
    assert ids(build(root, min_instances=2)) == [30, 40, 50]
    assert ids(build(root, min_instances=3)) == [40]
    # pool indices stay dense after filtering
    ds = build(root, min_instances=2)
    assert [ds.get_data_info(i)['pool_index'] for i in range(len(ds))] == [0, 1, 2]


@pytest.mark.parametrize('categories,expected', [
    (['chair'], [30, 50]),
    (['bed', 'car'], [40, 50]),
    ([1], [20]),  # the crowd person of image 30 is no instance
    (['chair', 3], [30, 40, 50]),
])
def test_category_filter_by_names_and_ids(tmp_path, categories, expected):
    root = make_coco(str(tmp_path))
    assert ids(build(root, categories=categories)) == expected


def test_min_instances_counts_only_chosen_categories(tmp_path):
    root = make_coco(str(tmp_path))
    ds = build(root, categories=['chair'], min_instances=2)
    assert ids(ds) == [30]
    assert ds.get_data_info(0)['num_instances'] == 2


def test_unknown_category_names_the_file(tmp_path):
    root = make_coco(str(tmp_path))
    with pytest.raises(ValueError, match=r"categories \['sofa', 99\] are not in .*"
                       r"instances_train2017\.json.*'bed'"):
        build(root, categories=['sofa', 'chair', 99])


def test_nothing_left_after_filtering_is_an_error(tmp_path):
    root = make_coco(str(tmp_path))
    with pytest.raises(ValueError, match=r"no image of .*instances_train2017\.json' passes"):
        build(root, min_instances=4)


def test_missing_empty_and_invalid_annotation_files_name_the_file(tmp_path):
    root = make_coco(str(tmp_path))
    path = osp.join(root, ANN)
    with pytest.raises(FileNotFoundError, match=r'instances_val2017\.json.* does not exist'):
        COCOPoolDataset(data_root=root, ann_file='annotations/instances_val2017.json')
    open(path, 'w').close()
    with pytest.raises(ValueError, match=f'{path}.* is empty'):
        build(root)
    with open(path, 'w') as f:
        f.write('{"images": [')
    with pytest.raises(ValueError, match=f'{path}.* is not valid JSON'):
        build(root)
    with open(path, 'w') as f:
        json.dump(dict(annotations=[]), f)
    with pytest.raises(ValueError, match=f"{path}.* not in COCO format"):
        build(root)
    with open(path, 'w') as f:
        json.dump(dict(images=[dict(id=1, file_name='a.jpg')], annotations=[dict(id=1)]), f)
    with pytest.raises(ValueError, match=f"{path}.*'annotations' without"):
        build(root)
    with pytest.raises(ValueError, match='ann_file'):
        COCOPoolDataset(data_root=root)


def test_shipped_config_pipelines(tmp_path, repo_root):
    root = make_coco(str(tmp_path))
    cfg = Config.fromfile(osp.join(repo_root, 'configs/_base_/datasets/coco_pool.py'))
    pool = DATASETS.build(dict(cfg.coco_pool, data_root=root))
    assert len(pool) == 5
    packed = pool[0]
    assert tuple(packed['inputs'].shape) == (3, 128, 128)
    assert 'gt_sem_seg' not in packed['data_samples']
    score = DATASETS.build(dict(cfg.coco_pool, data_root=root, pipeline=cfg.pool_score_pipeline))
    a, b = score[3]['inputs'], score[3]['inputs']
    assert min(a.shape[1:]) == 256 and (a == b).all()
