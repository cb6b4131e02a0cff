"""tools/export_onnx.py: the synthetic MobileNetV2 student config (SyncBN, an auxiliary
head) + a checkpoint -> a dynamic student.onnx whose onnxruntime results the tool
checks at two sizes against MMSeg's test_step (printed), and that runs at a third size;
an op that does not export exits 2 naming its module; a missing package exits 3 saying
what to install; --help gives the graph's whole contract."""
import os.path as osp
import re
import runpy
import sys

import pytest
import torch
from mmengine.model import revert_sync_batchnorm
from onnx_utils import assert_same_decisions, spread_logits

from mmseg_dfss.core import build_frozen_segmentor
from mmseg_dfss.models.onnx_export import (PARITY_ATOL, build_exportable, mmseg_seg_logits,
                                           random_image)

ort = pytest.importorskip('onnxruntime')
STUDENT = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'
NECK = '''
import torch, torch.nn as nn
from mmseg.registry import MODELS


@MODELS.register_module()
class FFTNeck(nn.Module):
    def forward(self, feats):
        return [*feats[:-1], feats[-1] + torch.fft.fft2(feats[-1]).abs()]
'''


@pytest.fixture(scope='module')
def student(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp('export_onnx')
    torch.manual_seed(0)
    model = spread_logits(revert_sync_batchnorm(build_frozen_segmentor(
        osp.join(repo_root, STUDENT), allow_random_teacher=True)))
    ckpt = str(tmp / 'student.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    return tmp, osp.join(repo_root, STUDENT), ckpt


@pytest.fixture
def export_main(repo_root, monkeypatch):
    """tools/export_onnx.py's ``main`` in this process."""
    monkeypatch.setattr(sys, 'argv', ['export_onnx.py'])
    return runpy.run_path(osp.join(repo_root, 'tools/export_onnx.py'))['main']


def test_help_states_the_graph_contract(export_main, capsys):
    with pytest.raises(SystemExit) as done:
        export_main(['--help'])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for words in ('input   image', 'output  seg_logits', 'output  pred_sem_seg',
                  'test-time padding', 'decode_head.threshold',
                  'resizing seg_logits back to the original image\n          size',
                  'A --dynamic graph cannot slide', 'Exit status: 0 written and checked'):
        assert words in out, words


def test_dynamo_without_onnxscript_exits_3_naming_it(export_main, student, monkeypatch,
                                                     capsys):
    tmp, config, ckpt = student
    monkeypatch.setitem(sys.modules, 'onnxscript', None)
    assert export_main([config, ckpt, '--out', str(tmp / 'dynamo.onnx'), '--dynamo']) == 3
    err = capsys.readouterr().err
    assert "missing package: ONNX export needs 'onnxscript': pip install onnxscript" in err
    assert 'Conv2d' not in err and not (tmp / 'dynamo.onnx').exists()


@pytest.mark.slow  # a tool run, > 10 s
def test_dynamic_export_checks_two_sizes(student, tool):
    tmp, config, ckpt = student
    out = str(tmp / 'student.onnx')
    proc = tool('tools/export_onnx.py', config, ckpt, '--out', out, '--shape', 64, 64,
                '--dynamic')
    checks = re.findall(r'parity at (\S+): max abs diff (\S+), prediction agreement (\S+)% '
                        r'of the (\S+)% decisive pixels', proc.stdout)
    assert [c[0] for c in checks] == ['1x7x64x64', '2x7x40x56'], proc.stdout
    assert all(float(d) <= PARITY_ATOL and float(a) == 100 and float(n) > 50
               for _, d, a, n in checks), checks
    _, segmentor, _ = build_exportable(config, ckpt)
    image = random_image((48, 32), batch=1, seed=5)
    sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    got, got_pred = sess.run(['seg_logits', 'pred_sem_seg'], {'image': image.numpy()})
    ref = mmseg_seg_logits(segmentor, image).numpy()
    assert got.shape == (1, 7, 48, 32)
    assert assert_same_decisions(got, ref, PARITY_ATOL, got_pred) > 0.5


@pytest.mark.slow  # a tool run, > 10 s
def test_unexportable_module_exits_2_naming_it(student, tool, repo_root):
    tmp, config, ckpt = student
    (tmp / 'fft_neck.py').write_text(NECK)
    bad = tmp / 'fft_config.py'
    bad.write_text(f'_base_ = [{config!r}]\n'
                   "custom_imports = dict(imports=['mmseg_dfss', 'fft_neck'], "
                   'allow_failed_imports=False)\n'
                   "model = dict(neck=dict(type='FFTNeck'))\n")
    out = tmp / 'bad.onnx'
    with pytest.raises(pytest.fail.Exception) as err:
        tool('tools/export_onnx.py', bad, ckpt, '--out', out, '--shape', 32, 32,
             env=dict(PYTHONPATH=f'{repo_root}:{tmp}'))
    msg = str(err.value)
    assert 'exited 2' in msg
    assert ("export failed: ONNX export (opset 17) failed in module 'segmentor.neck' (FFTNeck): "
            "Exporting the operator 'aten::fft_fft2'") in msg
    assert not out.exists()


def test_distiller_config_is_refused_with_the_reason(export_main, repo_root, tmp_path, capsys):
    """A config the exporter cannot take exits 2 saying why, not with a traceback."""
    dfss = osp.join(repo_root, 'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py')
    assert export_main([dfss, str(tmp_path / 'x.pth'), '--out', str(tmp_path / 'x.onnx')]) == 2
    err = capsys.readouterr().err
    assert 'export refused: ValueError: ONNX export takes a segmentor config' in err
    assert 'tools/export_student.py' in err
