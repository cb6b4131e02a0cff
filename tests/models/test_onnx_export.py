"""ONNX export of a student (issue 16): onnxruntime gives MMSeg's own ``test_step``
``seg_logits`` from raw BGR pixels, for two student families of the backbone-swap
matrix (zoo configs, random weights, calibrated BN, shrunk in width), static and
with dynamic N/H/W; an op that does not export is named with its module; and
``import mmseg_dfss`` needs neither onnx nor onnxruntime."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmseg.registry import MODELS
from test_backbone_swap_matrix import STUDENTS, calibrate_bn, zoo_model

from mmseg_dfss.core import build_frozen_segmentor
from mmseg_dfss.models.onnx_export import (OnnxExportError, OnnxParityError, build_exportable,
                                           check_parity, export_and_check, export_onnx,
                                           random_image, mmseg_seg_logits)

ort = pytest.importorskip('onnxruntime')
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def student_ckpt(tmp_path_factory):
    """family -> (config, checkpoint): a zoo student (its auxiliary head included, as
    a zoo checkpoint has it) with random weights and BN statistics of real
    activations (so logits are far from zero), saved once."""
    root = tmp_path_factory.mktemp('onnx_students')
    made = {}

    def make(name):
        if name not in made:
            torch.manual_seed(0)
            cfg = Config(dict(model=zoo_model(*STUDENTS[name])))
            segmentor = calibrate_bn(revert_sync_batchnorm(
                build_frozen_segmentor(cfg.model, allow_random_teacher=True)))
            with torch.no_grad():  # zoo init (std 0.01) gives logits ~0.05: spread them
                segmentor.decode_head.conv_seg.weight.mul_(30)
            path = str(root / f'{name}.pth')
            torch.save({'state_dict': segmentor.state_dict()}, path)
            made[name] = (cfg, path)
        return made[name]

    return make


def onnx_logits(path, image):
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    assert [i.name for i in sess.get_inputs()] == ['image']
    return sess.run(None, {'image': image.numpy()})[0]


@pytest.mark.parametrize('family', ['DeepLabV3-MobileNetV2', 'BiSeNetV2'])
def test_onnxruntime_matches_test_step(family, student_ckpt, tmp_path):
    """SyncBN zoo configs; a checkpoint with auxiliary_head weights loads (left out)."""
    cfg, ckpt = student_ckpt(family)
    out = str(tmp_path / 'student.onnx')
    results = export_and_check(cfg, ckpt, out, shape=(64, 64))
    assert results[0]['max_abs_diff'] < 1e-3 and results[0]['argmax_agreement'] == 1.0
    # independently of check_parity: a fresh model from the checkpoint, MMSeg's test_step
    _, segmentor, _ = build_exportable(cfg, ckpt)
    image = random_image((64, 64), seed=7)
    ref = mmseg_seg_logits(segmentor, image).numpy()
    got = onnx_logits(out, image)
    assert got.shape == ref.shape == (1, 19, 64, 64)
    assert ref.std() > 0.5  # logits of a trained-like scale, not a near-zero random net
    np.testing.assert_allclose(got, ref, atol=1e-3)
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_dynamic_export_runs_at_two_sizes(student_ckpt, tmp_path):
    cfg, ckpt = student_ckpt('DeepLabV3-MobileNetV2')
    out = str(tmp_path / 'dynamic.onnx')
    results = export_and_check(cfg, ckpt, out, shape=(64, 64), dynamic=True,
                               check_shapes=[(48, 80)])
    assert [r['shape'] for r in results] == [(1, 19, 64, 64), (2, 19, 48, 80)]
    assert all(r['max_abs_diff'] < 1e-3 for r in results)
    _, segmentor, _ = build_exportable(cfg, ckpt)
    image = random_image((40, 72), batch=3, seed=3)  # a third size, odd batch
    np.testing.assert_allclose(onnx_logits(out, image),
                               mmseg_seg_logits(segmentor, image).numpy(), atol=1e-3)


def test_parity_check_fails_on_other_weights(student_ckpt, tmp_path):
    """The check compares with the checkpoint's model: other weights exceed 1e-3; an
    input the graph cannot take fails the check too."""
    cfg, ckpt = student_ckpt('DeepLabV3-MobileNetV2')
    out = str(tmp_path / 'a.onnx')
    wrapper, segmentor, _ = build_exportable(cfg, ckpt)
    export_onnx(wrapper, out, (32, 32))
    check_parity(segmentor, out, random_image((32, 32)))
    # a static graph at another size: onnxruntime's refusal is a parity failure (exit 1)
    with pytest.raises(OnnxParityError, match=r'onnxruntime cannot run .* \(1, 3, 48, 32\)'):
        check_parity(segmentor, out, random_image((48, 32)))
    with torch.no_grad():
        segmentor.decode_head.conv_seg.bias.add_(0.01)
    with pytest.raises(OnnxParityError, match=r'max \|onnxruntime - test_step\| = 0.01'):
        check_parity(segmentor, out, random_image((32, 32)))


@MODELS.register_module(force=True)
class SpectralNeck(nn.Module):
    """A neck whose 2-D FFT has no ONNX symbolic at opset 17."""

    def __init__(self, channels=80):
        super().__init__()
        self.gate = nn.Conv2d(channels, channels, 1)

    def forward(self, feats):
        last = feats[-1]
        return [*feats[:-1], self.gate(last) + torch.fft.fft2(last).abs()]


def test_unexportable_op_is_named_with_its_module(repo_root, tmp_path):
    cfg = Config.fromfile(os.path.join(repo_root, 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'))
    cfg.model.neck = dict(type='SpectralNeck')
    wrapper, _, _ = build_exportable(cfg, None)
    out = str(tmp_path / 'bad.onnx')
    with pytest.raises(OnnxExportError) as err:
        export_onnx(wrapper, out, (32, 32))
    assert err.value.module == 'segmentor.neck'
    assert err.value.module_type == 'SpectralNeck'
    assert "in module 'segmentor.neck' (SpectralNeck)" in str(err.value)
    assert 'aten::fft_fft2' in str(err.value)
    assert not os.path.exists(out)


def test_import_needs_no_onnx():
    """``import mmseg_dfss`` (models, engine and the export module included) works with
    onnx/onnxruntime/onnxscript unimportable; the export then says what to install."""
    code = ('import sys\n'
            'for m in ("onnx", "onnxruntime", "onnxscript"): sys.modules[m] = None\n'
            'import mmseg_dfss, mmseg_dfss.models, mmseg_dfss.engine\n'
            'from mmseg_dfss.models import onnx_export\n'
            'try:\n'
            '    onnx_export.ort_session("x.onnx")\n'
            'except ImportError as e:\n'
            '    print("ERR", e)\n')
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'ERR ONNX export needs \'onnxruntime\': pip install "mmseg-dfss[deploy]"' \
        in proc.stdout
