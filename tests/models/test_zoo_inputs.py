"""Zoo-sized inputs and zoo students (issue 10, items 5-6): padding never enters the
distillation loss nor an ADS score; the loss is fp32 under mixed precision; the
student's unsupervised auxiliary head is dropped; ``--amp``'s optim wrapper runs
on a CPU-only machine."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS, OPTIM_WRAPPERS
from mmseg.structures import SegDataSample
from model_utils import randomise_bn

import mmseg_dfss.models.data_free_distiller as distiller_module
from mmseg_dfss.core import PoolScorer, build_frozen_segmentor, load_model_config
from mmseg_dfss.core.preprocess import non_padding_preprocessor
from mmseg_dfss.models import DataFreeDistiller, WDPDLoss, student_config
from mmseg_dfss.models.wdpd_loss import LOSS_RTOL

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'
STUDENT_WITH_AUX = 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py'
DP = dict(type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True,
          pad_val=0, seg_pad_val=255)


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory, repo_root):
    torch.manual_seed(0)
    teacher = randomise_bn(build_frozen_segmentor(osp.join(repo_root, TEACHER), allow_random_teacher=True))
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), path)
    return path


def build(repo_root, teacher_ckpt, student=STUDENT, **kw):
    torch.manual_seed(0)
    model = DataFreeDistiller(teacher=osp.join(repo_root, TEACHER),
                              teacher_checkpoint=teacher_ckpt,
                              student=osp.join(repo_root, student), **kw)
    model.init_weights()
    return revert_sync_batchnorm(model)


def batch(shapes, weights=None):
    """uint8 images of the given (h, w) shapes, as a dataloader gives them."""
    g = torch.Generator().manual_seed(3)
    inputs, samples = [], []
    for i, (h, w) in enumerate(shapes):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        ds = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        if weights is not None:
            ds.set_metainfo(dict(ads_weight=weights[i]))
        samples.append(ds)
    return dict(inputs=inputs, data_samples=samples)


def record_logits(monkeypatch):
    """The (upsampled) teacher and student logits that loss() computes with."""
    seen = {}
    original = DataFreeDistiller._logits

    def recording(segmentor, inputs, data_samples, what):
        seen[what] = original(segmentor, inputs, data_samples, what)
        return seen[what]

    monkeypatch.setattr(DataFreeDistiller, '_logits', staticmethod(recording))
    return seen


def record_log(monkeypatch):
    messages = []
    monkeypatch.setattr(distiller_module, 'print_log',
                        lambda msg, *a, **k: messages.append(msg))
    return messages


# ------------------------------------------------------------------ padding: loss
def test_padded_batch_loss_is_the_masked_mean(repo_root, teacher_ckpt, monkeypatch):
    """Crops smaller than the preprocessor's size=(64, 64) are padded right/bottom:
    the loss is the mean over each sample's real pixels, computed here by hand from
    the very logits loss() used, and a one-time warning gives the padding share."""
    model = build(repo_root, teacher_ckpt, distill_loss=dict(type='WDPDLoss', mode='wdd'),
                  data_preprocessor=dict(DP, size=(64, 64)))
    model.eval()  # no dropout: the logits recorded are the ones of the loss
    seen = record_logits(monkeypatch)
    log = record_log(monkeypatch)
    shapes = [(40, 48), (64, 24)]
    data = model.data_preprocessor(batch(shapes, weights=[0.25, 0.75]), training=True)
    assert tuple(data['inputs'].shape[2:]) == (64, 64)
    with torch.no_grad():
        loss = model.loss(**data)['loss_wdpd']
    s, t = seen['student'], seen['teacher']
    assert s.shape[2:] == (64, 64)
    per = [(s[i, :, :h, :w] - t[i, :, :h, :w]).abs().mean() for i, (h, w) in enumerate(shapes)]
    expected = (0.25 * per[0] + 0.75 * per[1]) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=LOSS_RTOL)
    # the padded pixels would change it: the unmasked mean is a different number
    unmasked = ((s - t).abs().mean(dim=(1, 2, 3)) * torch.tensor([0.25, 0.75])).mean()
    assert abs(unmasked.item() - expected.item()) > 1e-3 * expected.item()
    share = 1 - (40 * 48 + 64 * 24) / (2 * 64 * 64)
    (warning, ) = [m for m in log if 'padding' in m]
    assert f'{share:.0%} of this training batch is padding' in warning
    assert 'model.data_preprocessor.size=(64, 48)' in warning
    with torch.no_grad():
        model.loss(**model.data_preprocessor(batch(shapes), training=True))
    assert len([m for m in log if 'padding' in m]) == 1  # one time only


def test_the_key_the_warning_names_is_enough(repo_root, teacher_ckpt, monkeypatch):
    """`model.data_preprocessor.size` alone (as --cfg-options sets it on a config
    without a data_preprocessor): normalisation from the teacher, no padding."""
    model = build(repo_root, teacher_ckpt, distill_loss=dict(type='WDPDLoss', mode='vanilla'),
                  data_preprocessor=dict(size=(32, 32)))
    teacher_dp = load_model_config(osp.join(repo_root, TEACHER)).data_preprocessor
    assert model.data_preprocessor.mean.flatten().tolist() == teacher_dp.mean
    assert model.data_preprocessor.std.flatten().tolist() == teacher_dp.std
    assert teacher_dp.bgr_to_rgb is True
    # a BGR image (planes 10, 20, 30) reaches the teacher as RGB: R first, normalised
    bgr = torch.stack([torch.full((32, 32), v, dtype=torch.uint8) for v in (10, 20, 30)])
    seen = model.data_preprocessor(dict(inputs=[bgr], data_samples=[SegDataSample()]))
    planes = seen['inputs'][0].flatten(1)
    rgb = [(v - m) / s for v, m, s in zip((30, 20, 10), teacher_dp.mean, teacher_dp.std)]
    torch.testing.assert_close(planes, torch.tensor(rgb).view(3, 1).expand_as(planes))
    log = record_log(monkeypatch)
    with torch.no_grad():
        model.loss(**model.data_preprocessor(batch([(32, 32)] * 2), training=True))
    assert not [m for m in log if 'padding' in m]
    # and the exported student is tested with the normalisation it was trained with
    from mmengine.config import Config
    dfss = Config.fromfile(osp.join(repo_root,
                                    'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'))
    dfss.model.data_preprocessor = dict(size=(32, 32))
    exported = student_config(dfss).model.data_preprocessor
    assert exported.type == 'SegDataPreProcessor' and exported.size == (32, 32)
    assert (exported.mean, exported.std, exported.bgr_to_rgb) == (
        teacher_dp.mean, teacher_dp.std, teacher_dp.bgr_to_rgb)


def test_wdpd_loss_ignores_whatever_is_in_the_padding():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 4, 16, 20, generator=g)
    t = torch.randn(3, 4, 16, 20, generator=g)
    shapes = [(16, 20), (10, 7), (3, 20)]
    loss = WDPDLoss(mode='wdd')
    w = torch.tensor([0.2, 0.5, 1.0])
    ref = loss(s, t, w, valid_shapes=shapes)
    garbage = s.clone()
    for i, (h, w_) in enumerate(shapes):
        garbage[i, :, h:, :] = 1e4
        garbage[i, :, :, w_:] = -1e4
    assert loss(garbage, t, w, valid_shapes=shapes).item() == pytest.approx(ref.item(),
                                                                         rel=LOSS_RTOL)
    by_hand = sum(w[i] * (s[i, :, :h, :w_] - t[i, :, :h, :w_]).abs().mean()
                  for i, (h, w_) in enumerate(shapes)) / 3
    assert ref.item() == pytest.approx(by_hand.item(), rel=LOSS_RTOL)
    with pytest.raises(ValueError, match='valid shapes'):
        loss(s, t, w, valid_shapes=[(16, 20), (17, 20), (3, 20)])
    with pytest.raises(ValueError, match='one \\(h, w\\) per sample'):
        loss(s, t, w, valid_shapes=[(16, 20)])


# ----------------------------------------------------------- padding: ADS scores
def _pool(root):
    """Six images of four sizes, none a multiple of 32."""
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(48, 40), (48, 40), (36, 52), (60, 44), (36, 52), (50, 50)]):
        cv2.imwrite(osp.join(root, f'{i}.png'), rng.integers(0, 256, (h, w, 3), np.uint8))
    from mmseg_dfss.datasets.unlabeled_image import UnlabeledImageDataset
    return UnlabeledImageDataset(data_root=str(root), pipeline=[])


@pytest.mark.parametrize('strategy', ['ads', 'confidence'])
def test_ads_scores_ignore_the_teacher_preprocessor_padding(repo_root, teacher_ckpt, tmp_path,
                                                             strategy):
    pool = _pool(tmp_path)
    plain = load_model_config(osp.join(repo_root, TEACHER))
    plain.data_preprocessor.size = None
    plain.data_preprocessor.size_divisor = 1
    padding = load_model_config(osp.join(repo_root, TEACHER))
    padding.data_preprocessor.size = (128, 128)
    padding.data_preprocessor.test_cfg = dict(size=(128, 128))
    divisor = load_model_config(osp.join(repo_root, TEACHER))
    divisor.data_preprocessor.test_cfg = dict(size_divisor=32)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
    scores = [PoolScorer(cfg, teacher_ckpt, strategy=strategy, score_pipeline=pipeline,
                         batch_size=2, progress=False).score(pool).scores
              for cfg in (plain, padding, divisor)]
    assert np.isfinite(scores[0]).all() and len(set(scores[0].tolist())) == 6
    np.testing.assert_array_equal(scores[1], scores[0])
    np.testing.assert_array_equal(scores[2], scores[0])


def test_non_padding_preprocessor_leaves_the_original_alone():
    with DefaultScope.overwrite_default_scope('mmseg'):
        dp = MODELS.build(dict(DP, size=(128, 128), test_cfg=dict(size_divisor=32)))
    plain = non_padding_preprocessor(dp)
    imgs = [torch.randint(0, 256, (3, 40, 52), dtype=torch.uint8) for _ in range(2)]
    data = dict(inputs=imgs, data_samples=[SegDataSample() for _ in imgs])
    assert tuple(plain(dict(data), False)['inputs'].shape) == (2, 3, 40, 52)
    assert tuple(dp(dict(data), False)['inputs'].shape) == (2, 3, 64, 64)  # unchanged
    assert dp.size == (128, 128) and plain.mean is dp.mean  # same buffers, same device


# ---------------------------------------------------------------- mixed precision
def test_loss_is_fp32_under_bf16_autocast(repo_root, teacher_ckpt, monkeypatch):
    model = build(repo_root, teacher_ckpt, distill_loss=dict(type='WDPDLoss', mode='vanilla'),
                  data_preprocessor=dict(DP, size=(48, 48)))
    model.eval()
    raw = {}
    model.student.decode_head.conv_seg.register_forward_hook(
        lambda m, a, out: raw.__setitem__('student', out))
    seen = record_logits(monkeypatch)
    data = model.data_preprocessor(batch([(40, 48), (48, 48)]), training=True)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        loss = model.loss(**data)['loss_wdpd']
    assert raw['student'].dtype == torch.bfloat16  # the networks ran in bf16 ...
    assert loss.dtype == torch.float32  # ... the loss did not
    s, t = seen['student'], seen['teacher']
    assert s.dtype == t.dtype == torch.float32
    by_hand = ((s[0, :, :40, :48] - t[0, :, :40, :48]).abs().mean()
               + (s[1] - t[1]).abs().mean()) / 2
    assert loss.item() == pytest.approx(by_hand.item(), rel=LOSS_RTOL)


def test_amp_optim_wrapper_runs_on_cpu(repo_root, teacher_ckpt):
    """What --amp builds (optim_wrapper.type='AmpOptimWrapper' in the mmseg scope):
    on a CPU-only machine, bf16 autocast and a train step with an fp32 loss."""
    assert not torch.cuda.is_available()
    model = build(repo_root, teacher_ckpt, distill_loss=dict(type='WDPDLoss', mode='vanilla'),
                  data_preprocessor=dict(DP, size=(32, 32)))
    with DefaultScope.overwrite_default_scope('mmseg'):
        wrapper = OPTIM_WRAPPERS.build(dict(
            type='AmpOptimWrapper', loss_scale='dynamic',
            optimizer=torch.optim.SGD(model.student.parameters(), lr=0.1)))
    inside = []
    model.student.decode_head.conv_seg.register_forward_hook(
        lambda m, a, out: inside.append(out.dtype))
    before = {k: v.clone() for k, v in model.student.state_dict().items()}
    log = model.train_step(batch([(32, 32)] * 2), wrapper)
    assert inside == [torch.bfloat16]
    assert log['loss_wdpd'].dtype == torch.float32 and torch.isfinite(log['loss_wdpd'])
    after = model.student.state_dict()
    assert any(not torch.equal(v, after[k]) for k, v in before.items()
               if v.is_floating_point())
    state = wrapper.state_dict()  # checkpoints / --resume
    wrapper.load_state_dict(state)
    with DefaultScope.overwrite_default_scope('mmseg'), pytest.raises(ValueError,
                                                                      match='bfloat16'):
        OPTIM_WRAPPERS.build(dict(type='AmpOptimWrapper', dtype='float16',
                                  optimizer=torch.optim.SGD(model.student.parameters(), lr=1)))


# ---------------------------------------------------------------- auxiliary head
def test_student_auxiliary_head_is_dropped_with_a_notice(repo_root, teacher_ckpt, monkeypatch,
                                                        tmp_path):
    from mmengine.config import Config
    from mmseg_dfss.models import export_student
    assert load_model_config(osp.join(repo_root, STUDENT_WITH_AUX)).auxiliary_head is not None
    log = record_log(monkeypatch)
    model = build(repo_root, teacher_ckpt, student=STUDENT_WITH_AUX,
                  data_preprocessor=dict(DP, size=(32, 32)))
    assert not model.student.with_auxiliary_head
    (notice, ) = [m for m in log if 'auxiliary_head' in m]
    assert 'FCNHead' in notice and '\n' not in notice
    # every student parameter gets a gradient: nothing for DDP to wait for
    model.train()
    model.distill_loss.set_progress(0, 10)
    losses = model.loss(**model.data_preprocessor(batch([(32, 32)] * 2), training=True))
    losses['loss_wdpd'].backward()
    unused = [n for n, p in model.student.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused
    # the exported student config has no auxiliary head either: it matches the weights
    dfss = Config.fromfile(osp.join(repo_root,
                                    'configs/synthetic/dfss_r18-tiny_to_mbv2-tiny_synthetic.py'))
    dfss.model.student = osp.join(repo_root, STUDENT_WITH_AUX)
    ckpt, cfg_path = export_student(dfss, model.student.state_dict(), str(tmp_path / 'out'))
    plain_cfg = Config.fromfile(cfg_path)
    assert 'auxiliary_head' not in plain_cfg.model
    plain = MODELS.build(plain_cfg.model)
    plain.load_state_dict(torch.load(ckpt, weights_only=True)['state_dict'], strict=True)
