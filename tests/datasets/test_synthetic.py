import csv
import hashlib
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmseg_dfss.datasets.synthetic import (CLASSES, SUBDOMAINS, OpenWorldPoolGenerator,
                                           RoomSceneGenerator, generate_synthetic)
from mmseg_dfss.datasets.synthetic.pool import object_centric, street, texture


def _digest(root):
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name == 'meta.json':
                continue
            path = osp.join(dirpath, name)
            h.update(osp.relpath(path, root).encode())
            with open(path, 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


def _generate(root, seed):
    generate_synthetic(str(root), seed=seed, num_train=6, num_test=3, pool_size=20, size=48,
                       progress=False)
    return _digest(str(root))


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = _generate(tmp_path / 'a', 0)
    assert _generate(tmp_path / 'b', 0) == a
    assert _generate(tmp_path / 'c', 1) != a


def test_rerun_with_same_arguments_reuses_and_changed_arguments_leave_no_stale_files(tmp_path):
    root = tmp_path / 'syn'
    _generate(root, 0)
    png = root / 'scenes' / 'img_dir' / 'train' / '00000.png'
    mtime = png.stat().st_mtime_ns
    _generate(root, 0)
    assert png.stat().st_mtime_ns == mtime  # reused, not rewritten
    generate_synthetic(str(root), seed=0, num_train=2, num_test=1, pool_size=5, size=48,
                       progress=False)
    assert sorted(os.listdir(root / 'scenes' / 'img_dir' / 'train')) == ['00000.png', '00001.png']
    pool_files = [f for _, _, fs in os.walk(root / 'pool') for f in fs if f.endswith('.png')]
    assert len(pool_files) == 5


def _tiny(root, **kwargs):
    return generate_synthetic(str(root), **dict(dict(seed=0, num_train=1, num_test=1,
                                                     pool_size=2, size=32, progress=False),
                                                **kwargs))


def test_a_folder_it_did_not_make_is_refused_and_left_alone(tmp_path):
    """--out data, where data/pool is the user's own: refused, nothing deleted."""
    root = tmp_path / 'data'
    (root / 'pool').mkdir(parents=True)
    (root / 'pool' / 'mine.jpg').write_bytes(b'user image')
    with pytest.raises(ValueError, match=r"data' is not empty and holds no meta.json"):
        _tiny(root)
    assert (root / 'pool' / 'mine.jpg').read_bytes() == b'user image'
    assert sorted(os.listdir(root)) == ['pool']

    (root / 'meta.json').write_text('{"name": "someone else\'s"}')
    with pytest.raises(ValueError, match='was not written by generate_synthetic'):
        _tiny(root)
    assert (root / 'pool' / 'mine.jpg').read_bytes() == b'user image'


def test_a_link_in_place_of_its_folder_is_never_written_through(tmp_path):
    """data/pool a symlink to the user's images (as docs/zoo.md suggests for real pools):
    regenerating refuses, the linked folder keeps its files and gets no new one."""
    root, images = tmp_path / 'syn', tmp_path / 'my_images'
    _tiny(root)
    images.mkdir()
    (images / 'mine.jpg').write_bytes(b'user image')
    os.rename(root / 'pool', tmp_path / 'old_pool')
    os.symlink(images, root / 'pool')
    with pytest.raises(ValueError, match=r"pool' is a link"):
        _tiny(root, seed=1)
    assert os.listdir(images) == ['mine.jpg']

    os.unlink(root / 'meta.json')
    os.symlink(tmp_path / 'elsewhere.json', root / 'meta.json')
    with pytest.raises(ValueError, match=r"meta.json' is a link"):
        _tiny(root, seed=1)
    assert not (tmp_path / 'elsewhere.json').exists()


def test_an_interrupted_run_is_regenerated_not_refused(tmp_path):
    root = tmp_path / 'syn'
    _tiny(root)
    meta = json.loads((root / 'meta.json').read_text())
    (root / 'meta.json').write_text(json.dumps(dict(meta, complete=False)))
    (root / 'pool' / 'stale.png').write_bytes(b'x')  # left by the interrupted run
    _tiny(root)
    assert not (root / 'pool' / 'stale.png').exists()
    assert json.loads((root / 'meta.json').read_text())['complete'] is True


def test_scenes_are_structured_rooms(tmp_path):
    gen = RoomSceneGenerator(size=64)
    img, lab = gen(np.random.default_rng(0))
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert lab.shape == (64, 64) and lab.max() < len(CLASSES)
    # ceiling on top, floor at the bottom, walls in between: a spatially coherent layout
    ceiling, floor = CLASSES.index('ceiling'), CLASSES.index('floor')
    assert (lab[0] == ceiling).mean() > 0.5
    assert np.isin(lab[-1], [floor, CLASSES.index('furniture'), CLASSES.index('object')]).all()
    # several classes per scene, and every class appears over a few scenes
    seen = set()
    for i in range(20):
        _, lab = gen(np.random.default_rng(i))
        assert len(np.unique(lab)) >= 4
        seen.update(np.unique(lab).tolist())
    assert seen == set(range(len(CLASSES)))


def test_pool_tags_name_the_subdomain_that_rendered_each_image(synthetic_root):
    pool_root = osp.join(synthetic_root, 'pool')
    with open(osp.join(pool_root, 'pool.csv')) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 64
    assert {r['subdomain'] for r in rows} <= set(SUBDOMAINS)
    assert len({r['subdomain'] for r in rows}) == len(SUBDOMAINS)
    renderers = {'streets': street, 'objects': object_centric, 'textures': texture}
    for row in rows:
        index = int(row['index'])
        assert row['filename'].split('/')[0] == row['subdomain']
        img = np.array(Image.open(osp.join(pool_root, row['filename'])))
        # re-render the image with the tagged sub-domain's own renderer: same pixels
        rng = np.random.default_rng([0, 3, index])
        if row['subdomain'] == 'near_rooms':
            from mmseg_dfss.datasets.synthetic.pool import shifted_room_style
            expected, _ = RoomSceneGenerator(64, shifted_room_style(rng, rng.uniform(0, 1)))(rng)
        else:
            expected = renderers[row['subdomain']](rng, 64)
        np.testing.assert_array_equal(img, expected)


def test_pool_mix_follows_the_requested_weights():
    gen = OpenWorldPoolGenerator(size=32, mix={'near_rooms': 3, 'textures': 1})
    names = [gen.subdomain(0, i) for i in range(2000)]
    assert set(names) == {'near_rooms', 'textures'}
    assert abs(names.count('near_rooms') / 2000 - 0.75) < 0.04
    with pytest.raises(ValueError, match='unknown pool sub-domains'):
        OpenWorldPoolGenerator(mix={'cities': 1})


def test_registered_datasets_read_the_written_files(synthetic_root):
    from mmseg.registry import DATASETS

    import mmseg_dfss  # noqa: F401
    scenes = DATASETS.build(
        dict(type='SyntheticScenesDataset', data_root=osp.join(synthetic_root, 'scenes'),
             data_prefix=dict(img_path='img_dir/test', seg_map_path='ann_dir/test'),
             pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                       dict(type='PackSegInputs')]))
    assert len(scenes) == 8
    assert scenes.metainfo['classes'] == CLASSES
    sample = scenes[0]
    assert tuple(sample['inputs'].shape) == (3, 64, 64)
    assert int(sample['data_samples'].gt_sem_seg.data.max()) < len(CLASSES)

    pool = DATASETS.build(
        dict(type='SyntheticPoolDataset', data_root=osp.join(synthetic_root, 'pool'),
             pipeline=[dict(type='LoadImageFromFile'),
                       dict(type='PackSegInputs',
                            meta_keys=('img_path', 'ori_shape', 'img_shape', 'subdomain'))]))
    assert len(pool) == 64
    sample = pool[5]
    assert 'gt_sem_seg' not in sample['data_samples']
    info = pool.get_data_info(5)
    assert info['pool_index'] == 5
    assert sample['data_samples'].subdomain == info['subdomain']
    assert info['img_path'].endswith(osp.join(info['subdomain'], '000005.png'))
