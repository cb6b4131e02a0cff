"""ONNX export of a student (issues 16, 25): onnxruntime gives MMSeg's own ``test_step``
``seg_logits`` and ``pred_sem_seg`` from raw BGR pixels, for two student families of the
backbone-swap matrix (zoo configs, random weights, calibrated BN, shrunk in width),
static and with dynamic N/H/W; the graph pads at test time as the data_preprocessor
does, slides when the config slides, thresholds a one-channel head as
``decode_head.threshold`` says; an op that does not export is named with its module;
and ``import mmseg_dfss`` needs neither onnx nor onnxruntime.

Two numeric paths never agree exactly: values are compared within ``PARITY_ATOL``,
decisions only where no difference within it can flip them (tests/onnx_utils.py)."""
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
from onnx_utils import assert_same_decisions
from test_backbone_swap_matrix import STUDENTS, calibrate_bn, zoo_model

from mmseg_dfss.core import build_frozen_segmentor
from mmseg_dfss.models.onnx_export import (PARITY_ATOL, OnnxExportError, OnnxParityError,
                                           build_exportable, check_parity, config_test_shape,
                                           export_and_check, export_onnx, mmseg_results,
                                           mmseg_seg_logits, random_image)
from mmseg_dfss.models.onnx_wrapper import padding_cfg

ort = pytest.importorskip('onnxruntime')
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'


def spread_logits(segmentor):
    """BN statistics of real activations, and a classifier that spreads the logits
    (zoo init, std 0.01, gives logits ~0.05, where every pixel is a near tie)."""
    segmentor = calibrate_bn(revert_sync_batchnorm(segmentor))
    with torch.no_grad():
        segmentor.decode_head.conv_seg.weight.mul_(30)
    return segmentor


@pytest.fixture(scope='module')
def student_ckpt(tmp_path_factory):
    """family -> (config, checkpoint): a zoo student (its auxiliary head included, as
    a zoo checkpoint has it) with random weights and spread logits, saved once."""
    root = tmp_path_factory.mktemp('onnx_students')
    made = {}

    def make(name):
        if name not in made:
            torch.manual_seed(0)
            cfg = Config(dict(model=zoo_model(*STUDENTS[name])))
            segmentor = spread_logits(build_frozen_segmentor(cfg.model,
                                                             allow_random_teacher=True))
            path = str(root / f'{name}.pth')
            torch.save({'state_dict': segmentor.state_dict()}, path)
            made[name] = (cfg, path)
        return made[name]

    return make


@pytest.fixture
def tiny(repo_root, tmp_path):
    """``tiny(**cfg_options)`` -> (config, checkpoint): the synthetic tiny MobileNetV2
    student with the given config changes, random weights, spread logits."""
    def make(**options):
        cfg = Config.fromfile(os.path.join(repo_root, TINY))
        cfg.merge_from_dict(options)
        torch.manual_seed(0)
        segmentor = spread_logits(build_frozen_segmentor(cfg.model, allow_random_teacher=True))
        path = str(tmp_path / 'tiny.pth')
        torch.save({'state_dict': segmentor.state_dict()}, path)
        return cfg, path
    return make


def onnx_outputs(path, image):
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    assert [i.name for i in sess.get_inputs()] == ['image']
    return sess.run(['seg_logits', 'pred_sem_seg'], {'image': image.numpy()})


@pytest.mark.parametrize('family', ['DeepLabV3-MobileNetV2', 'BiSeNetV2'])
def test_onnxruntime_matches_test_step(family, student_ckpt, tmp_path):
    """SyncBN zoo configs; a checkpoint with auxiliary_head weights loads (left out)."""
    cfg, ckpt = student_ckpt(family)
    out = str(tmp_path / 'student.onnx')
    results = export_and_check(cfg, ckpt, out, shape=(64, 64))
    assert results[0]['max_abs_diff'] <= PARITY_ATOL and results[0]['agreement'] == 1.0
    assert results[0]['decisive'] > 0.5
    # independently of check_parity: a fresh model from the checkpoint, MMSeg's test_step
    _, segmentor, _ = build_exportable(cfg, ckpt)
    image = random_image((64, 64), seed=7)
    ref, ref_pred = (t.numpy() for t in mmseg_results(segmentor, image))
    got, got_pred = onnx_outputs(out, image)
    assert got.shape == ref.shape == (1, 19, 64, 64) and got_pred.shape == (1, 1, 64, 64)
    assert ref.std() > 0.5  # logits of a trained-like scale, not a near-zero random net
    assert assert_same_decisions(got, ref, PARITY_ATOL, got_pred) > 0.5


def test_dynamic_export_runs_at_two_sizes(student_ckpt, tmp_path):
    cfg, ckpt = student_ckpt('DeepLabV3-MobileNetV2')
    out = str(tmp_path / 'dynamic.onnx')
    results = export_and_check(cfg, ckpt, out, shape=(64, 64), dynamic=True,
                               check_shapes=[(48, 80)])
    assert [r['shape'] for r in results] == [(1, 19, 64, 64), (2, 19, 48, 80)]
    assert all(r['max_abs_diff'] <= PARITY_ATOL and r['agreement'] == 1 for r in results)
    _, segmentor, _ = build_exportable(cfg, ckpt)
    image = random_image((40, 72), batch=3, seed=3)  # a third size, odd batch
    got, got_pred = onnx_outputs(out, image)
    assert assert_same_decisions(got, mmseg_seg_logits(segmentor, image).numpy(),
                                 PARITY_ATOL, got_pred) > 0.5


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


@pytest.mark.parametrize('test_cfg', [dict(size_divisor=32), dict(size=(48, 64))],
                         ids=['size_divisor', 'size'])
def test_graph_pads_at_test_time(test_cfg, tiny, tmp_path):
    """MMSeg pads test inputs by data_preprocessor.test_cfg (SegNeXt, Mask2Former and
    SAN set size_divisor=32) and crops the logits back: the graph does too, static and
    dynamic, at sizes the padding changes."""
    cfg, ckpt = tiny(**{'model.data_preprocessor.test_cfg': test_cfg})
    out = str(tmp_path / 'padded.onnx')
    results = export_and_check(cfg, ckpt, out, shape=(40, 56), dynamic=True,
                               check_shapes=[(33, 45)])
    assert [r['shape'] for r in results] == [(1, 7, 40, 56), (2, 7, 33, 45)]
    _, segmentor, _ = build_exportable(cfg, ckpt)
    image = random_image((40, 56), seed=4)
    ref = mmseg_seg_logits(segmentor, image).numpy()
    got, got_pred = onnx_outputs(out, image)
    assert assert_same_decisions(got, ref, PARITY_ATOL, got_pred) > 0.5
    # the padding matters at this size: unpadded, the same model gives other logits
    segmentor.data_preprocessor.test_cfg = None
    assert np.abs(mmseg_seg_logits(segmentor, image).numpy() - ref).max() > 10 * PARITY_ATOL


def binary_options(threshold):
    return {'model.decode_head.num_classes': 2, 'model.decode_head.out_channels': 1,
            'model.decode_head.threshold': threshold,
            'model.decode_head.loss_decode': dict(type='CrossEntropyLoss', use_sigmoid=True)}


def test_one_channel_head_thresholds_as_test_step(tiny, tmp_path):
    """A binary head: seg_logits is the sigmoid, pred_sem_seg is ``> threshold`` (0.3
    here, MMSeg's default, not 0.5), as in test_step; the check compares the graph's
    predictions with test_step's and fails a graph that decides at another threshold."""
    cfg, ckpt = tiny(**binary_options(0.3))
    out = str(tmp_path / 'binary.onnx')
    [result] = export_and_check(cfg, ckpt, out, shape=(48, 64))
    assert result['shape'] == (1, 1, 48, 64) and result['agreement'] == 1
    assert result['decisive'] > 0.5
    wrapper, segmentor, _ = build_exportable(cfg, ckpt)
    image = random_image((48, 64), seed=2)
    ref, ref_pred = (t.numpy() for t in mmseg_results(segmentor, image))
    got, got_pred = onnx_outputs(out, image)
    assert assert_same_decisions(got, ref, PARITY_ATOL, got_pred, threshold=0.3) > 0.5
    assert (got_pred == ref_pred).mean() > 0.99
    between = (ref > 0.3 + PARITY_ATOL) & (ref < 0.5 - PARITY_ATOL)
    assert between.mean() > 0.05  # pixels a 0.5 threshold decides otherwise
    assert (got_pred[between] == 1).all()
    # what the caller needs to resize back and decide again, in the graph
    meta = ort.InferenceSession(out, providers=['CPUExecutionProvider']
                                ).get_modelmeta().custom_metadata_map
    assert meta == dict(align_corners='False', threshold='0.3', mode='whole',
                        outputs='seg_logits,pred_sem_seg')
    wrapper.threshold = 0.5  # a graph that thresholds at 0.5: the check sees it
    export_onnx(wrapper, out, (48, 64))
    with pytest.raises(OnnxParityError, match=r'prediction agreement (\d|\.)+%') as err:
        check_parity(segmentor, out, image)
    assert '100.0000% of the' not in str(err.value)


def test_slide_inference(tiny, tmp_path):
    """test_cfg.mode='slide': a static graph at the image size slides exactly as
    test_step (no exit 1 for the graph asked for); a dynamic graph is whole-image,
    checked against whole-image test_step, its real difference from slide stated."""
    cfg, ckpt = tiny(**{'model.test_cfg': dict(mode='slide', crop_size=(32, 48),
                                               stride=(24, 32))})
    [static] = export_and_check(cfg, ckpt, str(tmp_path / 'slide.onnx'), shape=(48, 72))
    assert static['agreement'] == 1 and 'vs_slide' not in static
    sess = ort.InferenceSession(str(tmp_path / 'slide.onnx'), providers=['CPUExecutionProvider'])
    assert sess.get_modelmeta().custom_metadata_map['mode'] == 'slide'
    _, segmentor, _ = build_exportable(cfg, ckpt)
    image = random_image((48, 72), seed=6)
    slide = mmseg_seg_logits(segmentor, image).numpy()
    got, got_pred = onnx_outputs(str(tmp_path / 'slide.onnx'), image)
    assert assert_same_decisions(got, slide, PARITY_ATOL, got_pred) > 0.5
    whole = mmseg_seg_logits(segmentor, image, mode='whole').numpy()
    assert np.abs(whole - slide).max() > 10 * PARITY_ATOL  # the two modes differ here
    [dynamic] = export_and_check(cfg, ckpt, str(tmp_path / 'whole.onnx'), shape=(48, 72),
                                 dynamic=True, check_shapes=[])  # other sizes: tested above
    assert dynamic['agreement'] == 1 and dynamic['vs_slide']['max_abs_diff'] > 10 * PARITY_ATOL
    got, got_pred = onnx_outputs(str(tmp_path / 'whole.onnx'), image)
    assert assert_same_decisions(got, whole, PARITY_ATOL, got_pred) > 0.5


def test_default_shape_is_the_test_image_size():
    """The default export size is one test image's (the test Resize scale, (w, h) in
    MMCV), which a slide graph slides over; the crop only when no scale is given."""
    slide = dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
    resize = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(2048, 1024))]
    assert config_test_shape(Config(dict(model=dict(test_cfg=slide),
                                         test_pipeline=resize))) == (1024, 2048)
    assert config_test_shape(Config(dict(model=dict(test_cfg=slide)))) == (512, 512)
    assert config_test_shape(Config(dict(model=dict(test_cfg=dict(
        slide, crop_size=256))))) == (256, 256)


def test_padding_needs_one_of_size_and_divisor():
    """As MMSeg's stack_batch: a test_cfg with both or neither is refused, naming it."""
    assert padding_cfg(dict(size_divisor=32)) == (None, 32)
    assert padding_cfg(dict(size=[48, 64])) == ((48, 64), None)
    for bad in (dict(size=(64, 64), size_divisor=32), dict(pad_val=0)):
        with pytest.raises(ValueError, match=r'data_preprocessor.test_cfg .* exactly one of '
                                             'size and size_divisor'):
            padding_cfg(bad)


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
    cfg = Config.fromfile(os.path.join(repo_root, TINY))
    cfg.model.neck = dict(type='SpectralNeck')
    wrapper, _, _ = build_exportable(cfg, None)
    out = str(tmp_path / 'bad.onnx')
    with open(out, 'w') as f:
        f.write('an earlier graph')
    with pytest.raises(OnnxExportError) as err:
        export_onnx(wrapper, out, (32, 32))
    assert err.value.module == 'segmentor.neck'
    assert err.value.module_type == 'SpectralNeck'
    assert "in module 'segmentor.neck' (SpectralNeck)" in str(err.value)
    assert 'aten::fft_fft2' in str(err.value)
    # nothing partial left, and an existing file of that name is not touched
    assert os.listdir(tmp_path) == ['bad.onnx'] and open(out).read() == 'an earlier graph'


def test_dynamo_without_onnxscript_says_what_to_install(monkeypatch, tmp_path):
    """docs/deploy.md promises an ImportError naming the package, before any work."""
    monkeypatch.setitem(sys.modules, 'onnxscript', None)
    with pytest.raises(ImportError, match=r"needs 'onnxscript': pip install onnxscript"):
        export_and_check('no_such_config.py', None, str(tmp_path / 'x.onnx'), dynamo=True)


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
