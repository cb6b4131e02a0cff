"""INT8 quantization of an exported student (onnxruntime's quantize_static, QDQ): the
INT8 graph's argmax agrees with FP32's on images it never calibrated on, the logits
path stays FP32, unreadable calibration images are counted and skipped, and a graph
of dynamic size needs a shape."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from model_utils import randomise_bn

from mmseg_dfss.core import build_frozen_segmentor
from mmseg_dfss.models.onnx_export import build_exportable, export_onnx
from mmseg_dfss.models.onnx_quantize import (QuantizationError, argmax_agreement,
                                             quantize_int8, read_graph_image)

ort = pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')
STUDENT = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'
SIZE = 64


@pytest.fixture(scope='module')
def graphs(tmp_path_factory, repo_root):
    """The synthetic student (random weights, BN statistics like a trained net's) as a
    static and a dynamic FP32 graph."""
    tmp = tmp_path_factory.mktemp('int8')
    torch.manual_seed(0)
    model = randomise_bn(build_frozen_segmentor(osp.join(repo_root, STUDENT),
                                                allow_random_teacher=True))
    ckpt = str(tmp / 'student.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    wrapper, _, _ = build_exportable(osp.join(repo_root, STUDENT), ckpt)
    static, dynamic = str(tmp / 'static.onnx'), str(tmp / 'dynamic.onnx')
    export_onnx(wrapper, static, (SIZE, SIZE))
    export_onnx(wrapper, dynamic, (SIZE, SIZE), dynamic=True)
    return tmp, static, dynamic


@pytest.fixture(scope='module')
def pool_images(synthetic_root):
    paths = sorted(glob.glob(osp.join(synthetic_root, 'pool', '**', '*.png'), recursive=True))
    assert len(paths) >= 40
    return paths[::2][:20], paths[1::2][:12]  # calibration, check (disjoint)


def test_int8_agrees_with_fp32_and_keeps_the_logits_fp32(graphs, pool_images):
    tmp, static, _ = graphs
    calib, check = pool_images
    out = str(tmp / 'int8.onnx')
    r = quantize_int8(static, out, calib)
    assert r['calibration_used'] == len(calib) and r['calibration_skipped'] == []
    model = onnx.load(out)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count('QuantizeLinear') > 10 and 'DequantizeLinear' in ops
    # the classifier conv has FP32 weights, and the final Resize (and the crop back after
    # test-time padding) gets FP32 logits
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    tail = {n.op_type: n for n in model.graph.node if n.name in r['fp32_nodes']}
    assert {'Conv', 'Resize'} <= set(tail) <= {'Conv', 'Resize', 'Slice'}
    assert inits[tail['Conv'].input[1]].data_type == onnx.TensorProto.FLOAT
    assert producer[tail['Resize'].input[0]] is tail['Conv']
    # agreement counted here apart from the library, on images it never calibrated on
    fp32 = ort.InferenceSession(static, providers=['CPUExecutionProvider'])
    int8 = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    same = pixels = 0
    for path in check:
        x = read_graph_image(path, (SIZE, SIZE))
        a = fp32.run(None, {'image': x})[0].argmax(1)
        b = int8.run(None, {'image': x})[0].argmax(1)
        same, pixels = same + int((a == b).sum()), pixels + a.size
    assert same / pixels >= 0.95
    got = argmax_agreement(static, out, check)
    assert got['pixels'] == pixels == len(check) * SIZE * SIZE
    assert got['agreement'] == same / pixels


def test_unreadable_calibration_images_are_counted_and_skipped(graphs, pool_images, tmp_path):
    _, static, _ = graphs
    calib, _ = pool_images
    broken, text = tmp_path / 'broken.png', tmp_path / 'notes.png'
    broken.write_bytes(open(calib[0], 'rb').read()[:40])  # a truncated PNG
    text.write_text('not an image')
    paths = [str(broken), *calib[:6], str(text), str(tmp_path / 'missing.png')]
    r = quantize_int8(static, str(tmp_path / 'int8.onnx'), paths)
    assert r['calibration_used'] == 6
    assert [p for p, _ in r['calibration_skipped']] == [
        str(broken), str(text), str(tmp_path / 'missing.png')]
    with pytest.raises(QuantizationError, match='no calibration image could be read'):
        quantize_int8(static, str(tmp_path / 'none.onnx'), [str(broken), str(text)])
    assert not osp.exists(tmp_path / 'none.onnx')


def test_dynamic_graph_needs_a_shape(graphs, pool_images, tmp_path):
    _, static, dynamic = graphs
    calib, check = pool_images
    with pytest.raises(QuantizationError, match='dynamic height/width: give --shape'):
        quantize_int8(dynamic, str(tmp_path / 'a.onnx'), calib)
    with pytest.raises(QuantizationError, match='does not match'):
        quantize_int8(static, str(tmp_path / 'b.onnx'), calib, shape=(48, 80))
    out = str(tmp_path / 'dyn_int8.onnx')
    r = quantize_int8(dynamic, out, calib[:8], shape=(48, 80))
    assert r['shape'] == (48, 80)
    dims = onnx.load(out).graph.input[0].type.tensor_type.shape.dim
    assert not dims[2].HasField('dim_value')  # still dynamic
    sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    x = read_graph_image(check[0], (48, 80))
    assert x.shape == (1, 3, 48, 80)
    assert sess.run(None, {'image': x})[0].shape == (1, 7, 48, 80)
    assert np.isfinite(sess.run(None, {'image': x})[0]).all()
