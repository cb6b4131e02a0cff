"""tools/quantize_onnx.py: prints the INT8/FP32 argmax agreement in every case, exits 1
below --min-agreement (the file kept for inspection), 2 when it cannot run (a dynamic
graph without --shape)."""
import glob
import importlib.util
import os.path as osp
import re

import pytest
import torch
from model_utils import randomise_bn

from mmseg_dfss.core import build_frozen_segmentor
from mmseg_dfss.models.onnx_export import build_exportable, export_onnx

pytest.importorskip('onnxruntime')
STUDENT = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'
AGREEMENT = re.compile(r'INT8 vs FP32 argmax agreement: ([\d.]+)% of (\d+) pixels of (\d+) '
                       r'check images')


@pytest.fixture(scope='module')
def quantize_onnx(repo_root):
    spec = importlib.util.spec_from_file_location(
        'quantize_onnx_tool', osp.join(repo_root, 'tools', 'quantize_onnx.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope='module')
def graphs(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp('quantize_tool')
    torch.manual_seed(1)
    model = randomise_bn(build_frozen_segmentor(osp.join(repo_root, STUDENT),
                                                allow_random_teacher=True))
    ckpt = str(tmp / 'student.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    wrapper, _, _ = build_exportable(osp.join(repo_root, STUDENT), ckpt)
    static, dynamic = str(tmp / 'static.onnx'), str(tmp / 'dynamic.onnx')
    export_onnx(wrapper, static, (64, 64))
    export_onnx(wrapper, dynamic, (64, 64), dynamic=True)
    return tmp, static, dynamic


def test_parity_failure_exits_1_and_agreement_is_always_printed(graphs, synthetic_root,
                                                                 quantize_onnx, capsys):
    tmp, static, _ = graphs
    folder = osp.join(synthetic_root, 'pool', 'near_rooms')
    n = len(glob.glob(osp.join(folder, '*.png')))
    out = str(tmp / 'int8.onnx')
    args = [static, '--out', out, '--calib-images', folder, '--num', '8']
    assert quantize_onnx(args) == 0
    text = capsys.readouterr().out
    agreement, pixels, images = AGREEMENT.search(text).groups()
    assert int(images) == max(1, n // 10) and int(pixels) == int(images) * 64 * 64
    assert 95 <= float(agreement) < 100, text  # precondition of the failure below
    assert f'written: {out}' in text

    strict = min(1.0, float(agreement) / 100 + 0.001)
    assert quantize_onnx(args + ['--min-agreement', str(strict)]) == 1
    captured = capsys.readouterr()
    assert AGREEMENT.search(captured.out).group(1) == agreement  # printed on failure too
    assert 'parity check failed' in captured.err and osp.isfile(out)


def test_dynamic_graph_needs_shape(graphs, synthetic_root, quantize_onnx, capsys):
    tmp, _, dynamic = graphs
    folder = osp.join(synthetic_root, 'pool', 'streets')
    args = [dynamic, '--out', str(tmp / 'dyn_int8.onnx'), '--calib-images', folder, '--num', '4']
    assert quantize_onnx(args) == 2
    assert 'dynamic height/width: give --shape H W' in capsys.readouterr().err
    assert not osp.exists(tmp / 'dyn_int8.onnx')
    assert quantize_onnx(args + ['--shape', '48', '72']) == 0
    assert 'at 48x72' in capsys.readouterr().out
