"""tools/export_onnx.py end to end: the synthetic MobileNetV2 student config (SyncBN,
an auxiliary head) + a checkpoint -> a dynamic student.onnx whose onnxruntime
logits the tool checks at two sizes against MMSeg's test_step (printed), and that
runs at a third size; an op that does not export exits 2 naming its module."""
import os.path as osp
import re

import numpy as np
import pytest
import torch
from model_utils import randomise_bn

from mmseg_dfss.core import build_frozen_segmentor
from mmseg_dfss.models.onnx_export import build_exportable, mmseg_seg_logits, random_image

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
    model = randomise_bn(build_frozen_segmentor(osp.join(repo_root, STUDENT),
                                                allow_random_teacher=True))
    ckpt = str(tmp / 'student.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    return tmp, osp.join(repo_root, STUDENT), ckpt


@pytest.mark.slow  # a tool run, > 10 s
def test_dynamic_export_checks_two_sizes(student, tool):
    tmp, config, ckpt = student
    out = str(tmp / 'student.onnx')
    proc = tool('tools/export_onnx.py', config, ckpt, '--out', out, '--shape', 64, 64,
                '--dynamic')
    checks = re.findall(r'parity at (\S+): max abs logit diff (\S+), argmax agreement (\S+)%',
                        proc.stdout)
    assert [c[0] for c in checks] == ['1x7x64x64', '2x7x40x56'], proc.stdout
    assert all(float(d) < 1e-3 and float(a) == 100 for _, d, a in checks), checks
    _, segmentor, _ = build_exportable(config, ckpt)
    image = random_image((48, 32), batch=1, seed=5)
    sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    got = sess.run(None, {'image': image.numpy()})[0]
    ref = mmseg_seg_logits(segmentor, image).numpy()
    assert got.shape == (1, 7, 48, 32)
    np.testing.assert_allclose(got, ref, atol=1e-3)


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
