"""Safe loading: a teacher checkpoint that carries a pickled object outside the
allow-list of mmseg_dfss.core.safe_load is refused before that object's code runs
(through ADS scoring, the distiller and MMEngine's checkpoint loader), and the ADS score
cache is plain JSON: a pickle planted in it is never unpickled."""
import json
import os
import os.path as osp
import pickle

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope

from mmseg_dfss.datasets import ADSDataset

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
pytestmark = pytest.mark.skipif(not hasattr(torch.serialization, 'add_safe_globals'),
                                reason='torch < 2.4 does not restrict torch.load')


class Payload:
    """Unpickling it would create the file ``marker`` (arbitrary code execution)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker, )


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


@pytest.fixture
def evil_ckpt(tmp_path, teacher_ckpt):
    """The teacher's real weights plus a payload in the checkpoint's meta."""
    state = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'evil_teacher.pth')
    torch.save({'state_dict': state, 'meta': {'note': Payload(marker)}}, path)
    return path, marker


@pytest.fixture(scope='module')
def pool_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('pool')
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(root / f'{i}.png'), rng.integers(0, 256, (32, 32, 3), np.uint8))
    return str(root)


def ads(repo_root, pool_dir, ckpt, cache_dir=None):
    return ADSDataset(
        dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=pool_dir),
                     pipeline=PIPELINE),
        teacher=osp.join(repo_root, TEACHER), teacher_checkpoint=ckpt, num_samples=2,
        score_pipeline=PIPELINE, cache_dir=cache_dir)


def test_ads_refuses_a_teacher_checkpoint_with_a_foreign_pickled_object(repo_root, pool_dir,
                                                                       evil_ckpt):
    path, marker = evil_ckpt
    with pytest.raises(pickle.UnpicklingError, match=r'(?s)Weights only load failed.*'
                       r'GLOBAL posix\.mkdir'):
        ads(repo_root, pool_dir, path)
    assert not osp.exists(marker), 'the pickled payload ran'


def test_distiller_refuses_the_same_checkpoint(repo_root, evil_ckpt):
    from mmseg_dfss.models import DataFreeDistiller
    path, marker = evil_ckpt
    model = DataFreeDistiller(teacher=osp.join(repo_root, TEACHER), teacher_checkpoint=path,
                              student=osp.join(repo_root, STUDENT))
    with pytest.raises(pickle.UnpicklingError, match=r'GLOBAL posix\.mkdir'):
        model.train()  # the teacher's weights are loaded when training starts
    assert not osp.exists(marker)


def test_refusal_names_the_checkpoint_file(repo_root, pool_dir, evil_ckpt):
    path, _ = evil_ckpt
    with pytest.raises(pickle.UnpicklingError, match='evil_teacher.pth'):
        ads(repo_root, pool_dir, path)


def test_mmengine_loader_used_by_resume_and_load_from_refuses_it(tmp_path):
    """Runner.resume/load_checkpoint (tools/train.py --resume, load_from) read
    checkpoints with this function: restricted by the allow-list too."""
    from mmengine.runner.checkpoint import _load_checkpoint
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'iter_1.pth')
    torch.save({'meta': {'iter': 1}, 'state_dict': {}, 'payload': Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match=r'GLOBAL posix\.mkdir'):
        _load_checkpoint(path, map_location='cpu')
    assert not osp.exists(marker)


def _one_line_pickle(marker):
    """A pickle of the payload with no newline byte: a reader that splits the file
    into lines and unpickles a line that is not JSON would run it."""
    for protocol in range(pickle.HIGHEST_PROTOCOL, -1, -1):
        blob = pickle.dumps(Payload(marker), protocol=protocol)
        if b'\n' not in blob:
            return blob
    raise AssertionError('every pickle protocol put a newline in the payload')


def test_score_cache_is_json_and_a_planted_pickle_is_never_unpickled(tmp_path, repo_root,
                                                                     pool_dir, teacher_ckpt):
    cache = str(tmp_path / 'cache')
    first = ads(repo_root, pool_dir, teacher_ckpt, cache)
    (folder, ) = [d for d in os.listdir(cache) if d.startswith('ads-')]  # + image_sizes.jsonl
    folder = osp.join(cache, folder)
    files = sorted(os.listdir(folder))
    assert 'meta.json' in files and files != ['meta.json'], files
    json.load(open(osp.join(folder, 'meta.json')))
    parts = [f for f in files if f != 'meta.json']
    for name in parts:
        with open(osp.join(folder, name)) as f:
            assert all(json.loads(line) for line in f)  # JSON lines, nothing else

    # an attacker (or a broken tool) plants pickles where the cache reads scores: a
    # line of every score file, and a whole new score file named like the others
    marker = str(tmp_path / 'code_ran')
    blob = _one_line_pickle(marker)
    for name in parts:
        with open(osp.join(folder, name), 'ab') as f:
            f.write(blob + b'\n')
    planted = parts[0].replace('0', '7', 1) if '0' in parts[0] else 'x' + parts[0]
    assert planted not in parts
    with open(osp.join(folder, planted), 'wb') as f:
        f.write(blob)
    assert not osp.exists(marker)
    again = ads(repo_root, pool_dir, teacher_ckpt, cache)
    assert not osp.exists(marker), 'a pickle planted in the score cache was unpickled'
    np.testing.assert_allclose(again.result.scores, first.result.scores, rtol=1e-6)
    assert list(again.selected) == list(first.selected)
