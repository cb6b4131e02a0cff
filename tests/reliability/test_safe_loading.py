"""Safe loading: a checkpoint that carries a pickled object outside the allow-list of
mmseg_dfss.core.safe_load is refused before that object's code runs, in every place a
run reads one (teacher_checkpoint through ADS scoring and the distiller, load_from,
--resume, tools/test.py, tools/export_student.py, tools/ads_score.py,
tools/compare_pools.py), with an error naming the file and the refused global; and the
ADS score cache is plain JSON: a pickle planted in it is never unpickled."""
import json
import os
import os.path as osp
import pickle
import re

import cv2
import numpy as np
import pytest
import torch
from conftest import run_python
from mmengine.registry import init_default_scope

from mmseg_dfss.datasets import ADSDataset

HERE = osp.dirname(osp.abspath(__file__))
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
    with pytest.raises(pickle.UnpicklingError, match=refusal(path)):
        ads(repo_root, pool_dir, path)
    assert not osp.exists(marker), 'the pickled payload ran'


def test_distiller_refuses_the_same_checkpoint(repo_root, evil_ckpt):
    from mmseg_dfss.models import DataFreeDistiller
    path, marker = evil_ckpt
    model = DataFreeDistiller(teacher=osp.join(repo_root, TEACHER), teacher_checkpoint=path,
                              student=osp.join(repo_root, STUDENT))
    with pytest.raises(pickle.UnpicklingError, match=refusal(path)):
        model.train()  # the teacher's weights are loaded when training starts
    assert not osp.exists(marker)


def test_mmengine_loader_used_by_resume_and_load_from_refuses_it(tmp_path):
    """Runner.resume/load_checkpoint (tools/train.py --resume, load_from) read
    checkpoints with this function: restricted by the allow-list too, with no retry
    in full (onedl-mmengine's own loader retries with weights_only=False)."""
    from mmengine.runner.checkpoint import _load_checkpoint
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'iter_1.pth')
    torch.save({'meta': {'iter': 1}, 'state_dict': {}, 'payload': Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match=refusal(path)):
        _load_checkpoint(path, map_location='cpu')
    assert not osp.exists(marker)


def test_a_url_given_to_load_from_or_resume_is_refused_too(tmp_path, monkeypatch):
    """MMEngine's http loader goes through torch.hub, which unpickles in full by default:
    on main a URL in load_from ran the payload on both lines."""
    from checkpoint_server import CheckpointServer
    from mmengine.runner.checkpoint import _load_checkpoint
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    marker = str(tmp_path / 'code_ran')
    torch.save({'meta': {'iter': 1}, 'state_dict': {}, 'payload': Payload(marker)},
               str(tmp_path / 'iter_1.pth'))
    with CheckpointServer(tmp_path) as server:
        url = server.url('iter_1.pth')
        with pytest.raises(pickle.UnpicklingError, match=refusal(url)):
            _load_checkpoint(url, map_location='cpu')
    assert not osp.exists(marker)


@pytest.mark.parametrize('url', [
    'x.pth', '/abs/x.pth', 'http://h/x.pth', 'https://h/x.pth', 's3://b/x.pth',
    'cluster:s3://b/x.pth', 'petrel://b/x.pth', 'open-mmlab://x', 'openmmlab://x',
    'torchvision://x', 'modelzoo://x', 'mmcls://x', 'pavi://x'])
def test_every_scheme_mmengine_ships_reads_through_the_safe_loader(url):
    from mmseg_dfss.core.safe_load import is_safe_loader
    assert is_safe_loader(url)


# ---- a payload planted where each tool reads a checkpoint (real processes) --------------


def refusal(path):
    """What every refusal says: the file, and the global it refused."""
    return re.escape(path) + r"' refused: it pickles posix\.mkdir"


PLACES = ['tools/test.py CKPT', 'load_from', '--resume', 'tools/export_student.py',
          'tools/ads_score.py', 'tools/compare_pools.py']


@pytest.fixture(scope='module')
def planted(tmp_path_factory, teacher_ckpt):
    """Per place, a checkpoint with a payload of its own (marker ``ran_<k>``): the
    teacher's real weights (a DataFreeDistiller's student.* weights and config for
    tools/export_student.py; for --resume the work dir's latest checkpoint)."""
    root = tmp_path_factory.mktemp('planted')
    state = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    work = root / 'work'
    work.mkdir()
    paths, markers = {}, {}
    for k, place in enumerate(PLACES):
        markers[place] = str(root / f'ran_{k}')
        evil = dict(state_dict=state, meta=dict(iter=1, note=Payload(markers[place])))
        paths[place] = str(root / f'evil_{k}.pth')
        if place == 'tools/export_student.py':
            evil = dict(state_dict={'student.' + k: v for k, v in state.items()},
                        meta=dict(cfg='model = dict()', note=Payload(markers[place])))
        elif place == '--resume':
            paths[place] = str(work / 'iter_1.pth')
            (work / 'last_checkpoint').write_text(paths[place])
        torch.save(evil, paths[place])
    return root, markers, paths


def _scenes(root):
    return [f'{k}_dataloader.dataset.data_root={root}/scenes' for k in ('train', 'val', 'test')]


def _argv(place, path, repo_root, root, synthetic_root):
    ads_cfg = osp.join(repo_root, 'configs/synthetic/ads_r18-tiny_synthetic-pool.py')
    pool = f'{synthetic_root}/pool'
    pool_opts = ['--cfg-options', f'train_dataloader.dataset.dataset.data_root={pool}',
                 f'train_dataloader.dataset.cache_dir={root}/cache',
                 'train_dataloader.dataset.num_samples=8']
    return {
        'tools/test.py CKPT': ['tools/test.py', TEACHER, path, '--work-dir', f'{root}/test',
                               '--cfg-options', *_scenes(synthetic_root)],
        'load_from': ['tools/train.py', TEACHER, '--work-dir', f'{root}/load_from',
                      '--cfg-options', f'load_from={path}', *_scenes(synthetic_root)],
        '--resume': ['tools/train.py', TEACHER, '--work-dir', f'{root}/work', '--resume',
                     '--cfg-options', *_scenes(synthetic_root)],
        'tools/export_student.py': ['tools/export_student.py', path, f'{root}/export'],
        'tools/ads_score.py': ['tools/ads_score.py', ads_cfg, '--teacher-checkpoint', path,
                               '--out', f'{root}/ads.csv', *pool_opts],
        'tools/compare_pools.py': ['tools/compare_pools.py', ads_cfg, '--pools', f'pool={pool}',
                                   '--teacher-checkpoint', path, '--original', 'none',
                                   '--no-progress', '--out', f'{root}/compare', *pool_opts],
    }[place]


@pytest.fixture(scope='module')
def tool_runs(planted, repo_root, synthetic_root):
    """Each tool run on its planted checkpoint (tests/reliability/run_tools.py: all in one
    process, one after the other; each stops where it reads the checkpoint)."""
    root, _, paths = planted
    with open(root / 'places.json', 'w') as f:
        json.dump({place: _argv(place, paths[place], repo_root, str(root), synthetic_root)
                   for place in PLACES}, f)
    proc = run_python(osp.join(HERE, 'run_tools.py'), root / 'places.json',
                      root / 'results.json')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(root / 'results.json') as f:
        return json.load(f)


@pytest.mark.parametrize('place', PLACES)
def test_a_payload_planted_where_a_tool_reads_a_checkpoint_never_runs(place, tool_runs,
                                                                      planted):
    _, markers, paths = planted
    ended = tool_runs[place]
    assert not osp.exists(markers[place]), f'the payload ran ({place}): {ended}'
    assert ended['type'] == 'CheckpointRefusedError', ended
    assert re.search(refusal(paths[place]), ended['message']), ended


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
    np.testing.assert_array_equal(again.result.scores, first.result.scores)  # the cache's own
    assert list(again.selected) == list(first.selected)
