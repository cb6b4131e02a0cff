"""StudentExportHook(onnx=True) writes student.onnx next to student.pth, from the
exported student_config.py + student.pth: onnxruntime on raw BGR pixels gives the
trained student's test_step results (within PARITY_ATOL; decisions compared where no
difference within it can flip them). Off by default."""
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmseg.registry import MODELS
from onnx_utils import assert_same_decisions, spread_logits

from mmseg_dfss.core import load_model_config
from mmseg_dfss.engine import StudentExportHook
from mmseg_dfss.models.data_free_distiller import drop_auxiliary_head
from mmseg_dfss.models.onnx_export import PARITY_ATOL, mmseg_seg_logits, random_image

ort = pytest.importorskip('onnxruntime')
DFSS = 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'


def fake_runner(repo_root, work_dir):
    """What the hook reads of a Runner after training: cfg, the distiller's student."""
    cfg = Config.fromfile(osp.join(repo_root, DFSS))
    torch.manual_seed(0)
    student = revert_sync_batchnorm(MODELS.build(drop_auxiliary_head(
        load_model_config(cfg.model.student), notice=False)))
    student.init_weights()
    spread_logits(student)
    return SimpleNamespace(cfg=cfg, model=SimpleNamespace(student=student),
                           work_dir=str(work_dir), train_dataloader=None, iter=2)


def test_hook_writes_student_onnx(repo_root, tmp_path):
    runner = fake_runner(repo_root, tmp_path)
    StudentExportHook(onnx=True, onnx_shape=(64, 64)).after_train(runner)
    out = tmp_path / 'student'
    assert sorted(p.name for p in out.iterdir()) == ['student.onnx', 'student.pth',
                                                     'student_config.py']
    student = runner.model.student
    # the student's normalisation (the distiller's data_preprocessor) is in the graph
    image = random_image((64, 64), seed=1)
    sess = ort.InferenceSession(str(out / 'student.onnx'), providers=['CPUExecutionProvider'])
    got, got_pred = sess.run(['seg_logits', 'pred_sem_seg'], {'image': image.numpy()})
    ref = mmseg_seg_logits(student, image).numpy()
    assert got.shape == (1, 7, 64, 64)
    assert assert_same_decisions(got, ref, PARITY_ATOL, got_pred) > 0.5


def test_hook_writes_no_onnx_by_default(repo_root, tmp_path):
    StudentExportHook().after_train(fake_runner(repo_root, tmp_path))
    assert sorted(p.name for p in (tmp_path / 'student').iterdir()) == [
        'student.pth', 'student_config.py']
