"""Backbone-swap matrix (issue 10, item 8): every pair of 6 MMSeg zoo teacher
families and 5 zoo student families distils 2 iterations, and ADS scores with every
teacher. Models come from the ``mmseg::`` Cityscapes configs as MMSeg ships them,
with random weights, shrunk only in width (base/head channels; depths, block
types and heads are the zoo's) and run at 64x64 px.

Each teacher family is built once (random weights, spread-out BN statistics,
saved as its checkpoint, which every pair loads strictly); each config is read
once. A pair that cannot work must fail at build naming the key to set; the one
such case here is ADS with ``bn_layers='backbone'`` on SegFormer, whose MiT
backbone has LayerNorm only. The table in docs/distillation.md comes from this
test (``pytest -m slow -v tests/models/test_backbone_swap_matrix.py``).
"""
import copy
import json
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmseg.structures import SegDataSample
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg_dfss.core import BNStatsDistance, build_frozen_segmentor, resolve_config_path
from mmseg_dfss.models import DataFreeDistiller

SIZE = 64
NUM_CLASSES = 19  # Cityscapes, as every config below
RESNET_TINY = dict(stem_channels=16, base_channels=8)  # R50/R101 stages: 32..256 channels

# family: (mmseg:: config, width overrides of its `model`, ADS bn_layers)
TEACHERS = {
    'DeepLabV3-R50': ('deeplabv3/deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024.py',
                      dict(backbone=RESNET_TINY, decode_head=dict(in_channels=256, channels=16),
                           auxiliary_head=dict(in_channels=128, channels=8)), 'backbone'),
    'PSPNet-R50': ('pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
                   dict(backbone=RESNET_TINY, decode_head=dict(in_channels=256, channels=16),
                        auxiliary_head=dict(in_channels=128, channels=8)), 'backbone'),
    'UPerNet-R50': ('upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py',
                    dict(backbone=RESNET_TINY,
                         decode_head=dict(in_channels=[32, 64, 128, 256], channels=16),
                         auxiliary_head=dict(in_channels=128, channels=8)), 'backbone'),
    'DeepLabV3+-R101': ('deeplabv3plus/deeplabv3plus_r101-d8_4xb2-40k_cityscapes-512x1024.py',
                        dict(backbone=RESNET_TINY,
                             decode_head=dict(in_channels=256, channels=16, c1_in_channels=32,
                                              c1_channels=8),
                             auxiliary_head=dict(in_channels=128, channels=8)), 'backbone'),
    'OCRNet-HRNetV2-W18': ('ocrnet/ocrnet_hr18_4xb2-40k_cityscapes-512x1024.py',
                           dict(decode_head={1: dict(channels=16, ocr_channels=8)}), 'backbone'),
    'SegFormer-MiT-B0': ('segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
                         dict(decode_head=dict(channels=16)), [r'^decode_head\.']),
}
STUDENTS = {
    'DeepLabV3-MobileNetV2': (
        'mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb2-80k_cityscapes-512x1024.py',
        dict(decode_head=dict(channels=16), auxiliary_head=dict(channels=8))),
    'FCN-R18': ('fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py',
                dict(backbone=RESNET_TINY, decode_head=dict(in_channels=64, channels=16),
                     auxiliary_head=dict(in_channels=32, channels=8))),
    'BiSeNetV2': ('bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py',
                  dict(decode_head=dict(channels=16))),
    'STDC1': ('stdc/stdc1_4xb12-80k_cityscapes-512x1024.py', dict(decode_head=dict(channels=16))),
    'SegFormer-MiT-B0': ('segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
                         dict(decode_head=dict(channels=16))),
}


def _merge(cfg, overrides):
    for key, value in overrides.items():
        if isinstance(cfg, list):
            _merge(cfg[key], value)
        elif isinstance(value, dict) and isinstance(cfg.get(key), (dict, list)):
            _merge(cfg[key], value)
        else:
            cfg[key] = value
    return cfg


def _no_pretrained(cfg):
    """Random weights: no ImageNet download (``pretrained`` / ``init_cfg=Pretrained``)."""
    if isinstance(cfg, dict):
        if 'pretrained' in cfg:
            cfg['pretrained'] = None
        if isinstance(cfg.get('init_cfg'), dict) and cfg['init_cfg'].get('type') == 'Pretrained':
            cfg['init_cfg'] = None
        for v in cfg.values():
            _no_pretrained(v)
    elif isinstance(cfg, list):
        for v in cfg:
            _no_pretrained(v)
    return cfg


def calibrate_bn(model):
    """BN running statistics of one forward over random images (as after training,
    the teacher's activations stay normalised; random statistics blow a deep
    random-weight teacher's logits up to ~1e7), then frozen again."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: exactly this batch's statistics
    model.train()
    with torch.no_grad():
        model._forward(model.data_preprocessor(batch(100, n=4), False)['inputs'])
    for m in bns:
        m.momentum = 0.1
    model.eval()
    return model


def zoo_model(rel, overrides):
    """The ``model`` of ``mmseg::rel`` as a plain dict, random init, shrunk in width."""
    model = Config.fromfile(resolve_config_path(f'mmseg::{rel}')).model.to_dict()
    return _merge(_no_pretrained(model), copy.deepcopy(overrides))


@pytest.fixture(scope='module')
def zoo(tmp_path_factory):
    """Family -> model dict (and, for teachers, a checkpoint), built once each."""
    root = tmp_path_factory.mktemp('zoo')
    built = {'teacher': {}, 'student': {}}

    def teacher(name):
        if name not in built['teacher']:
            rel, overrides, _ = TEACHERS[name]
            cfg = zoo_model(rel, overrides)
            torch.manual_seed(0)
            model = calibrate_bn(build_frozen_segmentor(cfg, allow_random_teacher=True))
            path = str(root / (re.sub(r'\W', '_', name) + '.pth'))
            torch.save({'state_dict': model.state_dict()}, path)
            built['teacher'][name] = (cfg, path, model)
        return built['teacher'][name]

    def student(name):
        if name not in built['student']:
            built['student'][name] = zoo_model(*STUDENTS[name])
        return built['student'][name]

    return teacher, student


def batch(seed, n=2):
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=[torch.randint(0, 256, (3, SIZE, SIZE), generator=g, dtype=torch.uint8)
                        for _ in range(n)],
                data_samples=[SegDataSample(metainfo=dict(img_shape=(SIZE, SIZE),
                                                          ori_shape=(SIZE, SIZE)))
                              for _ in range(n)])


@pytest.mark.slow
@pytest.mark.parametrize('teacher_name', list(TEACHERS))
def test_teacher_scores_ads(teacher_name, zoo):
    """ADS runs with every zoo teacher; a teacher whose selected layers have no
    BatchNorm fails before any image, with the bn_layers to set."""
    cfg, _, teacher = zoo[0](teacher_name)
    bn_layers = TEACHERS[teacher_name][2]
    if bn_layers != 'backbone':
        with pytest.raises(ValueError) as err:
            BNStatsDistance(teacher, 'backbone')
        msg = str(err.value)
        assert 'MixVisionTransformer' in msg and 'LayerNorm' in msg
        assert f'bn_layers={bn_layers!r}' in msg
    x = teacher.data_preprocessor(batch(1, n=3), False)['inputs']
    with BNStatsDistance(teacher, bn_layers) as scorer:
        d = scorer(x)
        assert scorer.layer_names
    assert d.shape == (3, ) and torch.isfinite(d).all() and len(set(d.tolist())) == 3


@pytest.mark.slow
@pytest.mark.parametrize('student_name', list(STUDENTS))
@pytest.mark.parametrize('teacher_name', list(TEACHERS))
def test_pair_distils_two_iterations(teacher_name, student_name, zoo):
    teacher_cfg, teacher_ckpt, _ = zoo[0](teacher_name)
    student_cfg = zoo[1](student_name)
    dp = dict(teacher_cfg['data_preprocessor'], size=(SIZE, SIZE))
    torch.manual_seed(0)
    model = DataFreeDistiller(teacher=teacher_cfg, teacher_checkpoint=teacher_ckpt,
                              student=student_cfg, data_preprocessor=dp,
                              distill_loss=dict(type='WDPDLoss', mode='vanilla'))
    model.init_weights()
    model = revert_sync_batchnorm(model)  # as MMEngine's Runner does without DDP
    assert not model.student.with_auxiliary_head
    student_before = {k: v.clone() for k, v in model.student.state_dict().items()}
    wrapper = OptimWrapper(torch.optim.SGD(model.student.parameters(), lr=0.01, momentum=0.9))
    model.train()  # loads the teacher checkpoint (training starts)
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    # every student parameter gets a gradient: under DDP nothing is left waiting
    model.loss(**model.data_preprocessor(batch(9), True))['loss_wdpd'].backward()
    unused = [n for n, p in model.student.named_parameters()
              if p.requires_grad and p.grad is None]
    assert not unused, unused[:5]
    wrapper.zero_grad()
    for it in range(2):
        log = model.train_step(batch(it), wrapper)
        assert torch.isfinite(log['loss_wdpd']), (it, log)
    teacher_after, student_after = model.teacher.state_dict(), model.student.state_dict()
    assert all(torch.equal(v, teacher_after[k]) for k, v in teacher_before.items())
    assert any(not torch.equal(v, student_after[k])
               for k, v in student_before.items() if v.is_floating_point())
    model.eval()
    with torch.no_grad():
        out = model.predict(**model.data_preprocessor(batch(5), False))
    assert out[0].pred_sem_seg.data.shape == (1, SIZE, SIZE)
    assert json.dumps(student_cfg)  # the student is a plain config (exportable)
