import json
import os
import os.path as osp
import re

import pytest
from dataset_layouts import make_coco
from mmengine.config import Config
from mmseg.registry import DATASETS

from mmseg_dfss.datasets import COCOPoolDataset

ANN = 'annotations/instances_train2017.json'


def build(root, **kwargs):
    kwargs.setdefault('index_dir', osp.join(root, 'index'))
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
    pool = DATASETS.build(dict(cfg.coco_pool, data_root=root, index_dir=None))
    assert len(pool) == 5
    packed = pool[0]
    assert tuple(packed['inputs'].shape) == (3, 128, 128)
    assert 'gt_sem_seg' not in packed['data_samples']
    score = DATASETS.build(dict(cfg.coco_pool, data_root=root, pipeline=cfg.pool_score_pipeline,
                                index_dir=None))
    a, b = score[3]['inputs'], score[3]['inputs']
    assert min(a.shape[1:]) == 256 and (a == b).all()


def _infos(ds):
    return [ds.get_data_info(i) for i in range(len(ds))]


def test_index_is_built_once_then_read_without_parsing(tmp_path, monkeypatch):
    """The filtered image list and sizes are kept in an index keyed by the
    annotation file's stamp and the filters: later builds never parse the file."""
    root = make_coco(str(tmp_path))
    first = build(root, min_instances=1)
    index = os.listdir(osp.join(root, 'index'))
    assert len(index) == 1 and index[0].startswith('instances_train2017-')
    info = first.get_data_info(0)
    assert (info['height'], info['width']) == (24, 32)  # from the annotation, no image read

    from mmseg_dfss.datasets import coco_pool

    def no_parse(self):
        raise AssertionError('the annotation file was parsed again')

    monkeypatch.setattr(coco_pool.COCOPoolDataset, '_load_json', no_parse)
    again = build(root, min_instances=1)
    assert _infos(again) == _infos(first) and ids(again) == [20, 30, 40, 50]
    # other filters are another index: they need a parse
    with pytest.raises(AssertionError, match='parsed again'):
        build(root, min_instances=2)
    monkeypatch.undo()
    assert ids(build(root, min_instances=2)) == [30, 40, 50]
    assert len(os.listdir(osp.join(root, 'index'))) == 2


def test_index_follows_a_changed_annotation_file_and_survives_damage(tmp_path):
    root = make_coco(str(tmp_path))
    assert ids(build(root)) == [10, 20, 30, 40, 50]
    path = osp.join(root, ANN)
    with open(path) as f:
        content = json.load(f)
    content['images'] = [im for im in content['images'] if im['id'] != 40]
    with open(path, 'w') as f:
        json.dump(content, f)
    assert ids(build(root)) == [10, 20, 30, 50]  # a new stamp: the index is rebuilt
    for name in os.listdir(osp.join(root, 'index')):
        with open(osp.join(root, 'index', name), 'w') as f:
            f.write('{"key": tru')  # damaged (interrupted write)
    assert ids(build(root)) == [10, 20, 30, 50]
    # no index at all: every build parses (the behaviour before the index)
    assert ids(build(root, index_dir=None)) == [10, 20, 30, 50]


@pytest.mark.parametrize('file_name', ['../outside.jpg', 'a/../../outside.jpg', '/etc/hostname',
                                       '..\\outside.jpg', ''])
@pytest.mark.parametrize('index_dir', [None, 'index'])
def test_a_file_name_outside_the_image_folder_is_refused_and_named(tmp_path, file_name,
                                                                   index_dir):
    """Absolute or ``..`` file names would read (and tools/teacher_label.py copy) a file
    outside the image folder; the pool index (read instead of the file) is checked too."""
    root = make_coco(str(tmp_path))
    path = osp.join(root, ANN)
    with open(path) as f:
        content = json.load(f)
    content['images'][1]['file_name'] = file_name
    image_id = content['images'][1]['id']
    with open(path, 'w') as f:
        json.dump(content, f)
    index = osp.join(root, index_dir) if index_dir else None
    with pytest.raises(ValueError, match=rf"image id {image_id} has file_name {re.escape(repr(file_name))}"
                       r', which is not a path inside the image folder'):
        build(root, index_dir=index)
