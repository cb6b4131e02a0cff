"""Bad input that the other test files do not already cover (docs/troubleshooting.md
lists the whole catalogue and where each item is tested): truncated PNG/JPEG pool
files, a pool without one readable image, eps <= 0, a teacher without BatchNorm
layers or without running statistics, a teacher whose BN statistics are not finite,
and non-finite teacher logits during distillation."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmseg_dfss.core import PoolScorer, load_model_config
from mmseg_dfss.core.pool_errors import TooManyUnreadableError
from mmseg_dfss.datasets import ADSDataset
from mmseg_dfss.models.wdpd_loss import LOSS_RTOL

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
STUDENT = 'configs/students/deeplabv3_mbv2-tiny_synthetic.py'
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


@pytest.fixture(scope='module')
def pool_dir(tmp_path_factory):
    """6 good images, then a truncated PNG and a truncated JPEG (first half of a
    valid file, as left by an interrupted download or copy)."""
    root = tmp_path_factory.mktemp('pool')
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(root / f'good{i}.png'), rng.integers(0, 256, (40, 40, 3), np.uint8))
    png = (root / 'good0.png').read_bytes()
    (root / 'trunc.png').write_bytes(png[:len(png) // 2])
    ok, jpg = cv2.imencode('.jpg', rng.integers(0, 256, (40, 40, 3), np.uint8))
    (root / 'trunc.jpg').write_bytes(jpg.tobytes()[:len(jpg) // 2])
    return str(root)


def ads(repo_root, pool, ckpt, teacher=TEACHER, **kw):
    args = dict(dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path=pool),
                             pipeline=PIPELINE),
                teacher=osp.join(repo_root, teacher) if isinstance(teacher, str) else teacher,
                teacher_checkpoint=ckpt, num_samples=3, score_pipeline=PIPELINE,
                score_batch_size=4, cache_dir=None, max_unreadable=0.5)  # 2 of 8 are bad
    args.update(kw)
    return ADSDataset(**args)


def test_truncated_png_and_jpeg_are_counted_unreadable(repo_root, pool_dir, teacher_ckpt):
    ds = ads(repo_root, pool_dir, teacher_ckpt, num_samples=6)
    bad = {osp.basename(ds.result.paths[i]): err for i, err in ds.result.errors.items()}
    assert set(bad) == {'trunc.png', 'trunc.jpg'}
    assert all('failed to load image' in err for err in bad.values())
    assert sorted(osp.basename(ds.result.paths[i]) for i in ds.selected) == [
        f'good{i}.png' for i in range(6)]


def test_pool_without_a_readable_image_is_a_clear_error(tmp_path, repo_root, teacher_ckpt):
    (tmp_path / 'a.png').write_bytes(b'')
    (tmp_path / 'b.png').write_text('not an image')
    with pytest.raises(TooManyUnreadableError, match='2 of 2 unreadable — wrong data_root'):
        ads(repo_root, str(tmp_path), teacher_ckpt, num_samples=1)


@pytest.mark.parametrize('eps', [0, -5, 2.5, '10'])
def test_eps_must_be_a_positive_integer(repo_root, pool_dir, teacher_ckpt, eps):
    with pytest.raises(ValueError, match=r'num_samples \(eps\) must be a positive integer, '
                       f'got {eps!r}'):
        ads(repo_root, pool_dir, teacher_ckpt, num_samples=eps)


def test_eps_not_positive_is_refused_before_scoring(repo_root, pool_dir, teacher_ckpt,
                                                   monkeypatch):
    def must_not_score(self, pool):
        raise AssertionError('the pool was scored before eps was checked')

    monkeypatch.setattr(PoolScorer, 'score', must_not_score)
    with pytest.raises(ValueError, match='must be a positive integer'):
        ads(repo_root, pool_dir, teacher_ckpt, num_samples=0)


def _gn_teacher(repo_root):
    """The synthetic teacher with GroupNorm instead of BatchNorm everywhere."""
    cfg = load_model_config(osp.join(repo_root, TEACHER)).to_dict()
    gn = dict(type='GN', num_groups=4, requires_grad=True)
    cfg['backbone']['norm_cfg'] = cfg['decode_head']['norm_cfg'] = gn
    cfg['auxiliary_head']['norm_cfg'] = gn
    return cfg


def test_teacher_without_batchnorm_is_refused(repo_root, pool_dir):
    with pytest.raises(ValueError, match=r"bn_layers='backbone' selects no BatchNorm layer "
                       r'of the teacher \(its BatchNorm layers: \[\]\)'):
        ads(repo_root, pool_dir, None, teacher=_gn_teacher(repo_root),
            allow_random_teacher=True)
    # the random and confidence strategies need no BN statistics
    ds = ads(repo_root, pool_dir, None, teacher=_gn_teacher(repo_root), strategy='confidence',
             allow_random_teacher=True)
    assert len(ds) == 3 and len(ds.result.errors) == 2


def test_teacher_bn_without_running_statistics_is_refused(repo_root, pool_dir):
    cfg = load_model_config(osp.join(repo_root, TEACHER)).to_dict()
    cfg['backbone']['norm_cfg'] = dict(type='BN', requires_grad=True,
                                       track_running_stats=False)
    with pytest.raises(ValueError, match=r"BatchNorm layer 'backbone\.stem\.1' keeps no "
                       r'running statistics \(track_running_stats=False\)'):
        ads(repo_root, pool_dir, None, teacher=cfg, allow_random_teacher=True)


def test_non_finite_teacher_bn_statistics_are_counted_and_refused(tmp_path, repo_root,
                                                                  pool_dir, teacher_ckpt):
    state = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    state['backbone.layer2.0.bn1.running_var'][3] = float('nan')  # a damaged teacher
    bad = str(tmp_path / 'nan_bn.pth')
    torch.save({'state_dict': state}, bad)
    with pytest.raises(ValueError, match=r'larger than the 0 pool images with a finite score '
                       r'\(pool of 8; 8 unreadable or non-finite\)'):
        ads(repo_root, pool_dir, bad, num_samples=1)
    # the scores themselves: 6 non-finite (never selectable), 2 unreadable
    from mmseg_dfss.datasets import UnlabeledImageDataset
    pool = UnlabeledImageDataset(data_prefix=dict(img_path=pool_dir), pipeline=[])
    res = PoolScorer(osp.join(repo_root, TEACHER), bad, score_pipeline=PIPELINE,
                     progress=False, max_unreadable=0.5).score(pool)
    assert len(res.nonfinite) == 6 and len(res.errors) == 2


@pytest.fixture(scope='module')
def distiller(repo_root, teacher_ckpt):
    from mmseg_dfss.models import DataFreeDistiller
    torch.manual_seed(0)
    model = DataFreeDistiller(
        teacher=osp.join(repo_root, TEACHER), teacher_checkpoint=teacher_ckpt,
        student=osp.join(repo_root, STUDENT), distill_loss=dict(type='WDPDLoss', mode='wdd'))
    model.init_weights()
    return revert_sync_batchnorm(model)


def _batch(n=2, size=32):
    g = torch.Generator().manual_seed(3)
    samples = []
    for _ in range(n):
        ds = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                         pad_shape=(size, size), ads_weight=1.0))
        ds.gt_sem_seg = PixelData(data=torch.zeros(1, size, size, dtype=torch.long))
        samples.append(ds)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
                        for _ in range(n)], data_samples=samples)


def test_non_finite_teacher_logits_are_excluded_and_counted(distiller):
    """A sample whose teacher logits are NaN teaches nothing: the batch loss is the
    finite sample's own loss, the bad sample's input gets exactly zero gradient,
    and it is counted."""
    model = distiller
    model.eval()  # BN on running statistics: the samples do not interact
    data = model.data_preprocessor(_batch(), training=True)
    with torch.no_grad():
        alone = model.loss(data['inputs'][:1], data['data_samples'][:1])['loss_wdpd']
    counted = model.nonfinite_teacher_samples
    # conv_seg is the last layer of the head (the head itself is called as .forward())
    handle = model.teacher.decode_head.conv_seg.register_forward_hook(
        lambda mod, args, out: torch.cat([out[:1], torch.full_like(out[1:], float('nan'))]))
    inputs = data['inputs'].clone().requires_grad_(True)
    try:
        loss = model.loss(inputs, data['data_samples'])['loss_wdpd']
    finally:
        handle.remove()
    assert torch.isfinite(loss), 'a sample with non-finite teacher logits poisoned the loss'
    assert loss.item() == pytest.approx(alone.item(), rel=LOSS_RTOL)
    assert model.nonfinite_teacher_samples == counted + 1
    model.zero_grad()
    loss.backward()
    assert torch.count_nonzero(inputs.grad[1]) == 0, 'the bad sample still trains the student'
    assert torch.count_nonzero(inputs.grad[0]) > 0
    assert all(torch.isfinite(p.grad).all() for p in model.student.parameters()
               if p.grad is not None)
