"""DataFreeDistiller: frozen teacher, gradients to the student only, per-sample ADS
weights, the student's predictions, and clear build errors."""
import copy

import pytest
import torch
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from mmseg_dfss.core import load_model_config
from mmseg_dfss.models import DataFreeDistiller, WDPDLoss
from mmseg_dfss.models.wdpd_loss import LOSS_RTOL

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory, repo_root):
    cfg = load_model_config(f'{repo_root}/{TEACHER}')
    torch.manual_seed(1)
    teacher = MODELS.build(cfg)
    teacher.init_weights()
    teacher = revert_sync_batchnorm(teacher)
    teacher.train()
    with torch.no_grad():  # give the BN layers non-trivial running statistics
        teacher.extract_feat(torch.randn(4, 3, 32, 32) * 2 + 0.5)
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), path)
    return path


def build(repo_root, teacher_ckpt, mode='vanilla', **kw):
    torch.manual_seed(0)
    model = DataFreeDistiller(
        teacher=f'{repo_root}/{TEACHER}', teacher_checkpoint=teacher_ckpt,
        student=f'{repo_root}/{STUDENT}', distill_loss=dict(type='WDPDLoss', mode=mode), **kw)
    model.init_weights()
    return revert_sync_batchnorm(model)  # as MMEngine's Runner does without DDP


def batch(weights=None, size=32, n=2):
    g = torch.Generator().manual_seed(3)
    samples = []
    for i in range(n):
        ds = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                         pad_shape=(size, size)))
        ds.gt_sem_seg = PixelData(data=torch.zeros(1, size, size, dtype=torch.long))
        if weights is not None and weights[i] is not None:
            ds.set_metainfo(dict(ads_weight=weights[i], ads_distance=float(i)))
        samples.append(ds)
    inputs = [torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
              for _ in range(n)]
    return dict(inputs=inputs, data_samples=samples)


def test_teacher_frozen_through_training(repo_root, teacher_ckpt):
    model = build(repo_root, teacher_ckpt)
    loaded = torch.load(teacher_ckpt)['state_dict']
    model.train()  # entering training loads the teacher's weights
    before = copy.deepcopy(model.teacher.state_dict())
    for k, v in before.items():  # the checkpoint is loaded and not re-initialised
        assert torch.equal(v, loaded[k]), k
    student_before = copy.deepcopy(model.student.state_dict())
    model.train()
    assert model.student.training and not model.teacher.training
    assert all(not m.training for m in model.teacher.modules())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9,
                                           weight_decay=1e-3))
    for _ in range(3):
        log = model.train_step(batch([0.3, None]), wrapper)
        assert set(log) == {'loss', 'loss_wdpd'}
    after = model.teacher.state_dict()
    for k, v in before.items():  # weights and BN buffers (running stats, counters)
        assert torch.equal(v, after[k]), f'teacher {k} changed'
    assert any(not torch.equal(v, model.student.state_dict()[k])
               for k, v in student_before.items() if v.is_floating_point())
    model.train(True)
    assert not model.teacher.training


def test_gradients_reach_only_the_student(repo_root, teacher_ckpt):
    model = build(repo_root, teacher_ckpt)
    model.train()
    data = model.data_preprocessor(batch(), training=True)
    # inputs that carry a graph (as a generator's images would): no autograd graph may
    # reach the teacher's activations, while the student's build one
    inputs = data['inputs'].float().requires_grad_(True)
    graph = {'teacher': [], 'student': []}

    def watch(part):
        def hook(module, args, out):
            outs = out if isinstance(out, (tuple, list)) else [out]
            graph[part] += [(torch.is_grad_enabled(), o.requires_grad or o.grad_fn is not None)
                            for o in outs if isinstance(o, torch.Tensor)]
        return hook

    handles = [m.register_forward_hook(watch(part)) for part in graph
               for m in getattr(model, part).modules()]
    try:
        losses = model.loss(inputs, data['data_samples'])
    finally:
        for h in handles:
            h.remove()
    assert graph['teacher'] and not any(g or r for g, r in graph['teacher'])
    assert graph['student'] and all(r for _, r in graph['student'])
    losses['loss_wdpd'].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    grads = [p.grad for p in model.student.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


def test_loss_uses_each_samples_ads_weight(repo_root, teacher_ckpt):
    model = build(repo_root, teacher_ckpt, mode='wdd')
    model.eval()  # deterministic student (no dropout) to recompute the loss by hand
    data = model.data_preprocessor(batch([0.25, None]), training=True)
    inputs = data['inputs']
    with torch.no_grad():
        out = model.loss(**data)['loss_wdpd']
        up = dict(size=inputs.shape[2:], mode='bilinear', align_corners=False)
        s = torch.nn.functional.interpolate(model.student._forward(inputs), **up)
        t = torch.nn.functional.interpolate(model.teacher._forward(inputs), **up)
    # the 32-px images are padded to the preprocessor's size (64): real pixels only
    h, w = data['data_samples'][0].img_shape
    per = (s - t)[:, :, :h, :w].abs().mean(dim=(1, 2, 3))
    assert s.shape[2:] == inputs.shape[2:]
    assert out.item() == pytest.approx(((0.25 * per[0] + 1.0 * per[1]) / 2).item(), rel=LOSS_RTOL)
    assert model.distill_loss.last_alpha.tolist() == [0.25, 1.0]


def test_predict_and_forward_are_the_students(repo_root, teacher_ckpt):
    """Validation, test and export see the student: the distiller predicts exactly
    what a stand-alone student built from the student config with the trained
    weights predicts, and not what the teacher predicts."""
    model = build(repo_root, teacher_ckpt)
    model.eval()
    alone = revert_sync_batchnorm(MODELS.build(load_model_config(f'{repo_root}/{STUDENT}')))
    missing, unexpected = alone.load_state_dict(model.student.state_dict(), strict=False)
    assert not missing and all(k.startswith('auxiliary_head.') for k in unexpected)
    alone.eval()
    data = model.data_preprocessor(batch(), training=False)
    with torch.no_grad():
        ours = model.predict(**copy.deepcopy(data))
        theirs = alone.predict(**copy.deepcopy(data))
        teachers = model.teacher.predict(**copy.deepcopy(data))
        assert torch.equal(model._forward(data['inputs']), alone._forward(data['inputs']))
    for a, b in zip(ours, theirs):
        assert torch.equal(a.seg_logits.data, b.seg_logits.data)
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
    # the check can tell the two networks apart on this batch
    assert not all(torch.equal(a.pred_sem_seg.data, t.pred_sem_seg.data)
                   for a, t in zip(ours, teachers))


def test_class_mismatch_is_a_build_error(repo_root, teacher_ckpt):
    student = load_model_config(f'{repo_root}/{STUDENT}')
    student.decode_head.num_classes = 5
    with pytest.raises(ValueError, match='teacher predicts 7 classes and the student 5'):
        DataFreeDistiller(teacher=f'{repo_root}/{TEACHER}', teacher_checkpoint=teacher_ckpt,
                          student=student)


def test_normalisation_must_match_the_teacher(repo_root, teacher_ckpt):
    dp = dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
              std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
    with pytest.raises(ValueError, match='teacher config normalises inputs differently'):
        DataFreeDistiller(teacher=f'{repo_root}/{TEACHER}', teacher_checkpoint=teacher_ckpt,
                          student=f'{repo_root}/{STUDENT}', data_preprocessor=dp)
    # without a data_preprocessor the teacher's normalisation is used for both
    model = DataFreeDistiller(teacher=f'{repo_root}/{TEACHER}', teacher_checkpoint=teacher_ckpt,
                              student=f'{repo_root}/{STUDENT}')
    assert model.data_preprocessor.mean.flatten().tolist() == [127.5] * 3
    assert isinstance(model.distill_loss, WDPDLoss)


def test_wrong_teacher_checkpoint_names_the_file(repo_root, tmp_path):
    bad = tmp_path / 'bad.pth'
    torch.save(dict(state_dict={'backbone.conv1.weight': torch.zeros(1)}), bad)
    model = DataFreeDistiller(teacher=f'{repo_root}/{TEACHER}', teacher_checkpoint=str(bad),
                              student=f'{repo_root}/{STUDENT}')
    with pytest.raises(KeyError, match='bad.pth'):  # when training starts
        model.train()
