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
    tool('tools/teacher_label.py', TEACHER, '--checkpoint', teacher_ckpt, '--images',
         str(images), '--out', str(out), '--model-config', model_cfg)
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
