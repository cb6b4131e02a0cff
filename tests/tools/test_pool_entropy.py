import csv
import importlib.util
import json
import os.path as osp
import sys

import numpy as np
import pytest
from dataset_layouts import make_coco, write_png


@pytest.fixture(scope='module')
def entropy_tool(repo_root):
    spec = importlib.util.spec_from_file_location(
        'pool_entropy', osp.join(repo_root, 'tools/pool_entropy.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # --workers pickles its functions by module name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def grey_levels(levels, size=(16, 16)):
    """A grey image using ``levels`` equally often (entropy log2(levels) bits)."""
    flat = np.repeat(np.asarray(levels, np.uint8), size[0] * size[1] // len(levels))
    return flat.reshape(size)


def make_folder(root):
    """Four images with known entropies 0, 1, 2 and 8 bits, in sub-folders."""
    write_png(osp.join(root, 'a', 'flat.png'), grey_levels([7]))
    write_png(osp.join(root, 'a', 'two.png'), grey_levels([0, 255]))
    # a colour image whose channels are equal: grey = that channel
    four = grey_levels([10, 20, 30, 40])
    write_png(osp.join(root, 'b', 'four.png'), np.stack([four] * 3, -1))
    write_png(osp.join(root, 'b', 'all.png'), grey_levels(np.arange(256)))
    return root


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def test_grey_entropy_is_shannon_entropy_in_bits(tmp_path, entropy_tool):
    make_folder(str(tmp_path))
    for name, bits in (('a/flat.png', 0.0), ('a/two.png', 1.0), ('b/four.png', 2.0),
                       ('b/all.png', 8.0)):
        assert entropy_tool.grey_entropy(str(tmp_path / name)) == pytest.approx(bits)
    assert entropy_tool.grey_entropy(str(tmp_path / 'missing.png')) is None


def test_colour_images_are_converted_to_grey_by_itu_r_601_luma(tmp_path, entropy_tool):
    """A colour image: H is that of its luma Y = 0.299 R + 0.587 G + 0.114 B (rounded),
    computed here in numpy. Red and a grey of its luma share one level; a channel
    swap, one channel alone or the channel mean would each give another H."""
    colours = np.array([[255, 0, 0], [76, 76, 76], [0, 255, 0], [0, 0, 255]], np.uint8)
    img = np.repeat(colours, [128, 64, 32, 32], axis=0).reshape(16, 16, 3)
    path = write_png(str(tmp_path / 'colour.png'), img)
    luma = np.rint(img.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    counts = np.bincount(luma.ravel(), minlength=256)
    p = counts[counts > 0] / counts.sum()
    expected = float(-(p * np.log2(p)).sum())
    assert sorted(counts[counts > 0]) == [32, 32, 192]  # levels 29, 150 and 76
    assert entropy_tool.grey_entropy(path) == pytest.approx(expected, abs=1e-12)


def test_folder_summary_csv_and_histogram(tmp_path, tool):
    root = make_folder(str(tmp_path / 'pool'))
    png, table = tmp_path / 'hist.png', tmp_path / 'entropy.csv'
    out = tool('tools/pool_entropy.py', root, '--out-png', png, '--out-csv', table,
               '--no-progress').stdout
    stats = last_json(out)
    values = np.array([1.0, 0.0, 8.0, 2.0])  # a/flat, a/two, b/all, b/four: sorted paths
    assert stats['num_images'] == 4 and stats['skipped'] == 0
    assert stats['mean'] == pytest.approx(values.mean())
    assert stats['median'] == pytest.approx(np.median(values))
    assert stats['variance'] == pytest.approx(values.var())
    assert 'mean 2.750, median 1.500, variance 9.688 bits' in out
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert [r['pool_index'] for r in rows] == ['0', '1', '2', '3']
    assert [osp.relpath(r['img_path'], root) for r in rows] == [
        'a/flat.png', 'a/two.png', 'b/all.png', 'b/four.png']
    assert [float(r['entropy']) for r in rows] == pytest.approx([0, 1, 8, 2])


def test_unreadable_images_are_counted_and_named(tmp_path, entropy_tool, capsys):
    root = make_folder(str(tmp_path / 'pool'))
    with open(osp.join(root, 'b', 'broken.png'), 'wb') as f:
        f.write(b'not a png')
    assert entropy_tool.main([root, '--no-progress', '--workers', '2']) == 0
    out = capsys.readouterr().out
    assert 'skipped 1 unreadable images, e.g.: ' + osp.join(root, 'b', 'broken.png') in out
    stats = last_json(out)
    assert stats['num_images'] == 4 and stats['skipped'] == 1
    assert stats['mean'] == pytest.approx(2.75)


def test_pool_config_and_max_images(tmp_path, entropy_tool, capsys, repo_root):
    root = make_coco(str(tmp_path / 'coco'))
    assert entropy_tool.main([osp.join(repo_root, 'configs/_base_/datasets/coco_pool.py'),
                              '--data-root', root, '--max-images', '3', '--no-progress']) == 0
    out = capsys.readouterr().out
    stats = last_json(out)
    assert stats['dataset'] == 'COCOPoolDataset' and stats['num_images'] == 3
    # random RGB noise: close to 8 bits
    assert 7.0 < stats['mean'] < 8.0


def test_wrapper_in_train_dataloader_is_opened_to_the_pool(tmp_path, entropy_tool, capsys):
    root = make_folder(str(tmp_path / 'pool'))
    cfg = tmp_path / 'dfss_like.py'
    cfg.write_text(
        "train_dataloader = dict(batch_size=2, dataset=dict(type='NoSuchWrapper', "
        f"teacher='x', dataset=dict(type='UnlabeledImageDataset', data_root='{root}')))\n"
        "other_pool = dict(type='UnlabeledImageDataset', data_root='/nowhere')\n")
    assert entropy_tool.main([str(cfg), '--no-progress']) == 0
    stats = last_json(capsys.readouterr().out)
    assert stats['dataset'] == 'UnlabeledImageDataset' and stats['num_images'] == 4


def test_ambiguous_config_asks_for_a_key(tmp_path, entropy_tool):
    cfg = tmp_path / 'two_pools.py'
    cfg.write_text("a = dict(type='UnlabeledImageDataset', data_root='/x')\n"
                   "b = dict(type='COCOPoolDataset', data_root='/y')\n")
    with pytest.raises(SystemExit, match=r"found 2 top-level dataset configs \['a', 'b'\]"):
        entropy_tool.main([str(cfg), '--no-progress'])
