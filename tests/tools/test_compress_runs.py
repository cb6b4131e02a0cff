"""tools/compress.py as a user runs it, at more than toy scale (slow suite):

- a real model name of the installed MMSeg's metafiles, no --teacher-checkpoint: the
  weights URL comes from the metafile and is fetched over HTTP, here from a server on
  127.0.0.1 (every https request of the run is sent there, path kept) holding a
  random-weight checkpoint of that zoo config, shrunk with --cfg-options only;
- a demo-scale run (a few hundred synthetic pool images, a few hundred iterations): the
  report holds every stage, and the distilled student agrees with the teacher more than
  a student with random weights does."""
import copy
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap
from urllib.parse import urlsplit

import numpy as np
import pytest
from cli_utils import flat_options
import torch
from checkpoint_server import CheckpointServer
from PIL import Image

ZOO_NAME = 'deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024'  # on both OpenMMLab lines
# the zoo DeepLabV3-R50 as a ResNet-18 of width 8; the zoo MobileNetV2 at 1/4 width
TEACHER_TINY = dict(backbone=dict(depth=18, stem_channels=8, base_channels=8),
                    decode_head=dict(in_channels=64, channels=8),
                    auxiliary_head=dict(in_channels=32, channels=8))
STUDENT_TINY = dict(backbone=dict(widen_factor=0.25),
                    decode_head=dict(in_channels=80, channels=8),
                    auxiliary_head=dict(in_channels=24, channels=8))
# runs tools/compress.py with every https request sent to the test's server, path kept
TO_LOCAL = textwrap.dedent('''\
    import runpy, sys, urllib.request

    class ToLocal(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return urllib.request.urlopen(urllib.request.Request(
                {root!r} + req.selector, headers=dict(req.header_items())))

    urllib.request.install_opener(urllib.request.build_opener(ToLocal))
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name='__main__')
    ''')


def save_tiny_zoo_teacher(cfg_path, path):
    """A random-weight checkpoint of the zoo config, shrunk as the run shrinks it;
    returns its weights digest."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmseg.registry import MODELS

    from mmseg_dfss.core.teacher import load_model_config, weights_digest
    torch.manual_seed(0)
    spec = Config._merge_a_into_b(copy.deepcopy(TEACHER_TINY), dict(cfg_path=cfg_path))
    model = revert_sync_batchnorm(MODELS.build(load_model_config(spec)))
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(dict(state_dict=model.state_dict()), path)
    return weights_digest(model)


def make_pool(root, n, hw=(64, 64)):
    rng = np.random.default_rng(0)
    for k in range(n):
        path = osp.join(root, f'set{k % 2}', f'img_{k}.png')
        os.makedirs(osp.dirname(path), exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(path)
    return root


def _run(repo_root, argv, env=None, wrapper=None):
    full = dict(os.environ, PYTHONPATH=repo_root, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
                **(env or {}))
    cmd = [sys.executable, *([wrapper] if wrapper else []), 'tools/compress.py', *argv]
    proc = subprocess.run(cmd, cwd=repo_root, env=full, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc


def _report(work_dir):
    with open(osp.join(work_dir, 'report.json')) as f:
        return json.load(f)


@pytest.mark.slow
def test_zoo_model_name_fetches_the_metafile_weights(tmp_path, repo_root):
    from mmseg_dfss.core.zoo import zoo_model
    cfg_path, url = zoo_model(ZOO_NAME)  # what the installed metafile says
    served = tmp_path / 'served'
    url_path = urlsplit(url).path
    digest = save_tiny_zoo_teacher(cfg_path, str(served) + url_path)
    pool = make_pool(str(tmp_path / 'pool'), 10)
    work = tmp_path / 'work'
    wrapper = tmp_path / 'to_local.py'
    with CheckpointServer(served) as server:
        wrapper.write_text(TO_LOCAL.format(root=server.url('')[:-1]))
        _run(repo_root, [
            ZOO_NAME, '--pool', pool, '--work-dir', str(work), '--crop', '32', '64',
            '--eps', '6', '--val-images', '2', '--iters', '2', '--batch-size', '2',
            '--cfg-options', *flat_options('model.teacher', TEACHER_TINY),
            *flat_options('model.student', STUDENT_TINY)],
            env=dict(TORCH_HOME=str(tmp_path / 'torch_home')), wrapper=str(wrapper))
        assert server.gets == {url_path: 1}  # fetched once; every stage reads the cache
    report = _report(work)
    assert report['teacher']['checkpoint'] == url and report['teacher']['given'] == ZOO_NAME
    assert report['teacher']['num_classes'] == 19
    assert report['teacher']['classes'][:2] == ['road', 'sidewalk']  # Cityscapes' names
    assert len(report['select']['kept']) == 6 and len(report['judge']['images']) == 2
    assert 0 <= report['judge']['miou'] <= 100 and osp.isfile(report['ship']['onnx'])
    # the distiller distilled from the served weights
    ckpt = torch.load(report['train']['checkpoint'], map_location='cpu', weights_only=False)
    assert bytes(ckpt['state_dict']['teacher_weights_digest'].tolist()).hex() == digest


@pytest.mark.slow
def test_demo_scale_run_distils_a_student_that_agrees_beyond_chance(
        tmp_path, teacher_ckpt, repo_root):
    from mmengine.config import Config
    from mmseg.apis import init_model

    from mmseg_dfss.apis.compress.judge_stage import true_miou
    from mmseg_dfss.datasets.synthetic import generate_synthetic
    root = str(tmp_path / 'synthetic')
    generate_synthetic(root, seed=1, num_train=1, num_test=1, pool_size=300, size=64,
                       progress=False)
    work = tmp_path / 'work'
    _run(repo_root, [
        'configs/synthetic/deeplabv3_r18-tiny_synthetic.py', '--pool', f'{root}/pool',
        '--work-dir', str(work), '--teacher-checkpoint', teacher_ckpt,
        '--student', 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py',
        '--eps', '200', '--val-images', '30', '--iters', '300', '--batch-size', '8',
        '--lr', '0.05'])
    report = _report(work)
    for stage in ('select', 'train', 'judge', 'ship'):
        assert report[stage]['seconds'] > 0, stage
    kept, judged = report['select']['kept'], report['judge']['images']
    assert report['select']['eps'] == len(kept) == 200
    assert len(judged) == 30 and not set(kept) & set(judged)
    assert report['train']['iters'] == 300
    assert set(report['judge']['per_class']) <= set(report['teacher']['classes'])
    assert set(report['commands']) >= {'select', 'train', 'judge', 'ship'}
    table = report['ship']['compression']
    assert table['teacher']['params'] > table['student']['params'] > 0
    # students of the same config with random weights, judged on the same images: one
    # that predicts the teacher's most frequent class everywhere scores ~20 here, so
    # the bar is the best of several
    cfg = str(work / 'student' / 'student_config.py')
    chance = []
    for seed in range(4):
        torch.manual_seed(seed)
        student = init_model(Config.fromfile(cfg), None, device='cpu')  # torch's init
        chance.append(true_miou(student, cfg)['miou'])
        torch.manual_seed(seed)
        student.init_weights()  # the config's init, as training starts from
        chance.append(true_miou(student, cfg)['miou'])
    assert report['judge']['miou'] > max(chance) + 5, (report['judge']['miou'], chance)
