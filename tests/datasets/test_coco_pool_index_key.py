"""Every part of the COCO pool index's key, one test each: a build that changes only
that part parses the annotation file again and lists the images it asks for, never
those of the cached index. (``min_instances`` and a file rewritten to another size:
tests/datasets/test_coco_pool.py.)"""
import json
import os
import os.path as osp
import shutil

from dataset_layouts import make_coco

from mmseg_dfss.datasets import COCOPoolDataset

ANN = 'annotations/instances_train2017.json'


def build(root, ann=ANN, **kwargs):
    return COCOPoolDataset(data_root=root, ann_file=ann, data_prefix=dict(img_path='train2017'),
                           index_dir=osp.join(root, 'index'), **kwargs)


def ids(ds):
    return [ds.get_data_info(i)['coco_image_id'] for i in range(len(ds))]


def test_categories(tmp_path):
    root = make_coco(str(tmp_path), write_images=False)
    assert ids(build(root, categories=['person'])) == [20]  # 30's person is a crowd
    assert ids(build(root, categories=['car'])) == [40]


def test_annotation_file_rewritten_in_place_with_the_same_size(tmp_path):
    """Another image id of as many digits: same size in bytes, a later mtime."""
    root = make_coco(str(tmp_path), write_images=False)
    assert ids(build(root)) == [10, 20, 30, 40, 50]
    path = osp.join(root, ANN)
    st = os.stat(path)
    with open(path) as f:
        text = f.read()
    with open(path, 'w') as f:
        f.write(text.replace('"id": 40,', '"id": 60,').replace('"image_id": 40,',
                                                              '"image_id": 60,'))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert os.stat(path).st_size == st.st_size
    assert ids(build(root)) == [10, 20, 30, 50, 60]


def test_annotation_file_name(tmp_path):
    """Another annotation file of the same size and mtime beside the first."""
    root = make_coco(str(tmp_path), write_images=False)
    assert ids(build(root)) == [10, 20, 30, 40, 50]
    path = osp.join(root, ANN)
    other = osp.join(root, 'annotations', 'instances_other2017.json')
    with open(path) as f:
        content = json.load(f)
    for im in content['images']:
        im['id'] += 1
    for a in content['annotations']:
        a['image_id'] += 1
    with open(other, 'w') as f:
        json.dump(content, f)
    shutil.copystat(path, other)
    assert os.stat(other).st_size == os.stat(path).st_size
    assert ids(build(root, 'annotations/instances_other2017.json')) == [11, 21, 31, 41, 51]
