"""Student export round trip: the synthetic DFSS config trains 2 iterations through
tools/train.py; the student that StudentExportHook and tools/export_student.py write
loads in plain MMSeg (this plugin made unimportable) and predicts what the
distiller predicts (within EXPORT_ATOL); MMSeg's own tools/test.py scores it as the training run did."""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from log_utils import read_scalars, read_test_metrics, train_steps
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmseg.registry import MODELS
from numerics import assert_same_argmax

from mmseg_dfss.models import export_student_from_checkpoint, student_config
from mmseg_dfss.models.student_export import EXPORT_ATOL

CONFIG = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'
TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
# runs a script with mmseg_dfss unimportable: any `import mmseg_dfss` raises
PLAIN = 'import sys, runpy; sys.modules["mmseg_dfss"] = None; sys.argv = sys.argv[1:]; ' \
        'runpy.run_path(sys.argv[0], run_name="__main__")'
INFER = '''
import sys, numpy as np
from mmseg.apis import init_model, inference_model
model = init_model(sys.argv[1], sys.argv[2], device="cpu")
assert "mmseg_dfss" not in [m for m in sys.modules if sys.modules[m] is not None]
out = {}
for i, img in enumerate(sys.argv[4:]):
    r = inference_model(model, img)
    out[f"pred{i}"] = r.pred_sem_seg.data.numpy()
    out[f"logits{i}"] = r.seg_logits.data.numpy()
np.savez(sys.argv[3], classes=np.array(model.dataset_meta["classes"]), **out)
'''


def plain_python(args, cwd):
    """Runs python with this plugin unimportable and no repo on the path."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', PLAIN, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f'plain MMSeg run failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}')
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def trained(tmp_path_factory, synthetic_root, repo_root, tool):
    """Work dir of a 2-iteration DFSS run with a random-init synthetic teacher."""
    from mmseg_dfss.core import load_model_config
    tmp = tmp_path_factory.mktemp('dfss_export')
    teacher = revert_sync_batchnorm(MODELS.build(load_model_config(osp.join(repo_root, TEACHER))))
    teacher.init_weights()
    ckpt = str(tmp / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)
    work = str(tmp / 'work')
    proc = tool(
        'tools/train.py', CONFIG, '--work-dir', work, '--cfg-options',
        f'model.teacher_checkpoint={ckpt}', f'train_dataloader.dataset.teacher_checkpoint={ckpt}',
        f'train_dataloader.dataset.dataset.data_root={synthetic_root}/pool',
        'train_dataloader.dataset.num_samples=16', f'train_dataloader.dataset.cache_dir={tmp}/c',
        'train_dataloader.batch_size=4',
        f'val_dataloader.dataset.data_root={synthetic_root}/scenes',
        f'test_dataloader.dataset.data_root={synthetic_root}/scenes',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.logger.interval=1',
        'default_hooks.visualization.draw=False')
    out = proc.stdout + proc.stderr
    steps = train_steps(read_scalars(work)[0], 'loss_wdpd', 'wdpd_alpha')  # finite numbers
    assert sorted(steps) == [1, 2], out[-3000:]
    val_miou = [r['mIoU'] for r in read_scalars(work)[1] if 'mIoU' in r][-1]
    return dict(work=work, tmp=tmp, val_miou=val_miou, scenes=f'{synthetic_root}/scenes')


def test_hook_and_tool_export_the_same_plain_checkpoint(trained):
    hook_dir = osp.join(trained['work'], 'student')
    tool_dir = str(trained['tmp'] / 'exported')
    export_student_from_checkpoint(osp.join(trained['work'], 'iter_2.pth'), tool_dir)
    a = torch.load(osp.join(hook_dir, 'student.pth'), weights_only=True)  # plain data only
    b = torch.load(osp.join(tool_dir, 'student.pth'), weights_only=True)
    assert a['state_dict'].keys() == b['state_dict'].keys()
    assert all(torch.equal(a['state_dict'][k], b['state_dict'][k]) for k in a['state_dict'])
    assert not any(k.startswith(('teacher.', 'student.')) for k in a['state_dict'])
    assert len(a['meta']['dataset_meta']['classes']) == 7
    for ckpt in (a, b):  # no config text (MMEngine would run it), no message hub
        assert set(ckpt) == {'meta', 'state_dict'}
        assert set(ckpt['meta']) == {'mmseg_dfss_export', 'dataset_meta'}
    text = open(osp.join(hook_dir, 'student_config.py')).read()
    assert 'mmseg_dfss' not in text and 'custom_imports' not in text
    assert 'DataFreeDistiller' not in text and 'ADSDataset' not in text


def test_plain_mmseg_predicts_what_the_distiller_predicts(trained):
    from mmseg.apis import inference_model
    export = osp.join(trained['work'], 'student')
    images = [osp.join(trained['scenes'], 'img_dir', 'test', f'{i:05d}.png') for i in range(2)]
    out = str(trained['tmp'] / 'plain.npz')
    plain_python([_write_infer(trained['tmp']), osp.join(export, 'student_config.py'),
                  osp.join(export, 'student.pth'), out, *images], cwd=str(trained['tmp']))
    plain = np.load(out)
    # the distiller itself, from its training checkpoint
    ckpt = torch.load(osp.join(trained['work'], 'iter_2.pth'), weights_only=False)
    cfg = Config.fromstring(ckpt['meta']['cfg'], file_format='.py')
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.load_state_dict(ckpt['state_dict'])
    model.cfg = Config(dict(test_pipeline=cfg.test_pipeline))
    model.eval()
    for i, img in enumerate(images):
        r = inference_model(model, img)
        # another process with another thread count: the same up to float32 sum order
        logits = r.seg_logits.data.numpy()
        np.testing.assert_allclose(plain[f'logits{i}'], logits, rtol=0, atol=EXPORT_ATOL)
        assert_same_argmax(logits, plain[f'pred{i}'][0], EXPORT_ATOL)
    assert list(plain['classes'])[0] == 'wall'


def _write_infer(tmp):
    path = str(tmp / 'infer.py')
    with open(path, 'w') as f:
        f.write(INFER)
    return path


def test_mmseg_test_tool_scores_the_export_like_the_training_run(trained):
    from mmseg_dfss.utils import find_mmseg_tool
    export = osp.join(trained['work'], 'student')
    plain_python([find_mmseg_tool('test.py'), osp.join(export, 'student_config.py'),
                  osp.join(export, 'student.pth'), '--work-dir',
                  str(trained['tmp'] / 'plain_test'), '--cfg-options',
                  f'test_dataloader.dataset.data_root={trained["scenes"]}'],
                 cwd=str(trained['tmp']))
    miou = read_test_metrics(str(trained['tmp'] / 'plain_test'))['mIoU']
    assert miou == pytest.approx(trained['val_miou'], abs=0.01)


def test_export_refuses_what_is_not_a_distiller(tmp_path, repo_root):
    cfg = Config.fromfile(osp.join(repo_root, TEACHER))
    with pytest.raises(ValueError, match="expected 'DataFreeDistiller'"):
        student_config(cfg)
    ckpt = str(tmp_path / 'plain.pth')
    torch.save(dict(state_dict={'backbone.w': torch.zeros(1)}), ckpt)
    with pytest.raises(KeyError, match='not a DataFreeDistiller checkpoint'):
        export_student_from_checkpoint(ckpt, str(tmp_path / 'out'))


def test_exported_student_normalises_as_it_was_trained(repo_root):
    from mmseg_dfss.core import load_model_config
    cfg = Config.fromfile(osp.join(repo_root, CONFIG))
    student = load_model_config(
        dict(cfg.model.student, cfg_path=osp.join(repo_root, cfg.model.student.cfg_path)))
    student.data_preprocessor.mean = [123.675, 116.28, 103.53]  # ignored by the distiller
    cfg.model.student = student
    cfg.model.teacher.cfg_path = osp.join(repo_root, cfg.model.teacher.cfg_path)
    assert student_config(cfg).model.data_preprocessor.mean == [127.5] * 3
    cfg.model.pop('data_preprocessor')  # the distiller then uses the teacher's
    teacher_dp = load_model_config(osp.join(repo_root, TEACHER)).data_preprocessor
    assert student_config(cfg).model.data_preprocessor.mean == teacher_dp.mean == [127.5] * 3
