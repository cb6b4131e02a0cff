"""tools/teacher_label.py: images + teacher labels in MMSeg's BaseSegDataset layout;
plain MMSeg (its own tools/test.py, no plugin) scores the teacher 100 on them."""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
from conftest import run_python
from PIL import Image

from mmseg_dfss.core import load_model_config
from mmseg_dfss.utils import find_mmseg_tool

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'


def plain_config(path, repo_root):
    """The teacher as a plain MMSeg config: no plugin, no mmseg:: base."""
    model = load_model_config(osp.join(repo_root, TEACHER)).to_dict()
    with open(path, 'w') as f:
        f.write(f"default_scope = 'mmseg'\nmodel = {model!r}\n"
                "env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'),\n"
                "               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))\n"
                "log_level = 'INFO'\nload_from = None\nresume = False\n")
    return path


@pytest.mark.slow
def test_plain_mmseg_scores_the_teacher_100_on_its_labels(tmp_path, synthetic_root, repo_root,
                                                          teacher_ckpt, tool):
    images = tmp_path / 'images'
    images.mkdir()
    pool = sorted(glob.glob(osp.join(synthetic_root, 'pool', '**', '*.png'), recursive=True))
    for k, src in enumerate(pool[:5]):
        shutil.copy(src, images / f'img{k}.png')
    Image.open(pool[5]).convert('RGB').resize((72, 48)).save(images / 'wide.jpg', quality=95)
    out = tmp_path / 'out'
    model_cfg = plain_config(str(tmp_path / 'teacher_plain.py'), repo_root)
    # the evaluation pipeline reduces zero labels, as ADE20K's does: teacher labels must not
    tool('tools/teacher_label.py', TEACHER, '--checkpoint', teacher_ckpt, '--images',
         str(images), '--out', str(out), '--model-config', model_cfg, '--cfg-options',
         'val_dataloader.dataset.pipeline.1.reduce_zero_label=True')
    imgs = sorted(os.listdir(out / 'img_dir'))
    anns = sorted(os.listdir(out / 'ann_dir'))
    assert len(imgs) == len(anns) == 6  # mixed suffixes: every image became a PNG
    assert [osp.splitext(a)[0] for a in anns] == [osp.splitext(i)[0] for i in imgs]
    assert all(i.endswith('.png') for i in imgs)
    for i, a in zip(imgs, anns):
        assert Image.open(out / 'img_dir' / i).size == Image.open(out / 'ann_dir' / a).size
    # plain MMSeg: its own tools/test.py, run outside the repository, no plugin on the path
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    proc = subprocess.run(
        [sys.executable, find_mmseg_tool('test.py'), str(out / 'test_config.py'),
         teacher_ckpt, '--work-dir', str(tmp_path / 'work')],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert 'mmseg_dfss' not in log
    assert re.search(r'mIoU: 100\.0+\b', log), log[-3000:]


@pytest.mark.slow
def test_reruns_never_write_into_source_images_or_foreign_folders(tmp_path, synthetic_root,
                                                                   repo_root, teacher_ckpt):
    """Two runs into one --out on two folders that each hold x.png (one tool process,
    tests/reliability/run_tools.py): the outputs are copies, so the second run leaves the
    first folder's x.png and the label cache as they were; a non-empty --out the tool did
    not write is refused, its files kept."""
    import json
    pool = sorted(glob.glob(osp.join(synthetic_root, 'pool', '**', '*.png'), recursive=True))
    sources = {}
    for k in ('a', 'b'):
        (tmp_path / k).mkdir()
        shutil.copy(pool[k == 'b'], tmp_path / k / 'x.png')
        sources[k] = (tmp_path / k / 'x.png').read_bytes()
    assert sources['a'] != sources['b']
    out, foreign = tmp_path / 'out', tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('mine')
    argv = ['tools/teacher_label.py', TEACHER, '--checkpoint', teacher_ckpt, '--images']
    places = {'first': argv + [str(tmp_path / 'a'), '--out', str(out)],
              'second': argv + [str(tmp_path / 'b'), '--out', str(out)],
              'foreign': argv + [str(tmp_path / 'a'), '--out', str(foreign)]}
    with open(tmp_path / 'places.json', 'w') as f:
        json.dump(places, f)
    proc = run_python('tests/reliability/run_tools.py', tmp_path / 'places.json',
                      tmp_path / 'results.json')
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / 'results.json') as f:
        results = json.load(f)
    assert results['first']['type'] is None and results['second']['type'] is None, results
    assert (tmp_path / 'a' / 'x.png').read_bytes() == sources['a']
    (img, ) = os.listdir(out / 'img_dir')
    assert (out / 'img_dir' / img).read_bytes() == sources['b']
    cache = [p for p in glob.glob(str(out / '.label_cache' / '**' / '*.png'), recursive=True)]
    for path in [out / 'img_dir' / img, out / 'ann_dir' / os.listdir(out / 'ann_dir')[0]]:
        assert os.stat(path).st_nlink == 1  # a copy: no source or cache file shares it
    assert cache and all(os.stat(p).st_nlink == 1 for p in cache)
    assert results['foreign']['type'] == 'SystemExit'
    assert 'is not empty and was not written by this tool' in results['foreign']['message']
    assert os.listdir(foreign) == ['notes.txt']


def _tool_module(repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location('teacher_label_tool',
                                                  osp.join(repo_root, 'tools', 'teacher_label.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PIPELINE = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 64)),
            dict(type='LoadAnnotations', reduce_zero_label=True), dict(type='PackSegInputs')]


@pytest.mark.parametrize('num_classes', [150, 300])
def test_the_written_test_set_reads_the_labels_as_written(num_classes, tmp_path, repo_root):
    """dataset.py's loader gives back the label files' values: no reduce_zero_label,
    and above 255 classes all 16 bits, with an ignore_index that is no class."""
    import numpy as np
    from mmengine.config import Config
    from mmseg.registry import DATASETS

    from mmseg_dfss.datasets.teacher_label_format import write_label
    out = tmp_path / 'out'
    for sub in ('img_dir', 'ann_dir'):
        (out / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(
        out / 'img_dir' / 'a.png')
    label = rng.integers(0, num_classes, (40, 56))
    label[0, :3] = [0, 255 % num_classes, num_classes - 1]
    write_label(str(out / 'ann_dir' / 'a.png'), label, num_classes)
    meta = dict(classes=[f'c{k}' for k in range(num_classes)],
                palette=[[k % 256, 0, 0] for k in range(num_classes)])
    text = _tool_module(repo_root).dataset_text(str(out), '.png', meta, PIPELINE)
    (out / 'dataset.py').write_text(text)
    cfg = Config.fromfile(str(out / 'dataset.py'))
    ignore = cfg.test_evaluator.get('ignore_index', 255)
    assert not 0 <= ignore < num_classes
    ds = DATASETS.build(cfg.test_dataloader.dataset)
    got = ds[0]['data_samples'].gt_sem_seg.data[0].numpy()
    assert (got == label).all()
