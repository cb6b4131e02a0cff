"""WDPDLoss against the paper's Eq. 10-13, written out independently per sample."""
import pytest
import torch

from mmseg_dfss.models import WDPDLoss
from mmseg_dfss.models.wdpd_loss import LOSS_RTOL


def eq13_alpha(w, t, total, r=0.5):
    return w + (1 - w) * t / (r * total) if t <= r * total else 1.0


def reference(s, t_logits, w, alphas, loss_weight=1.0):
    per = [(s[i] - t_logits[i]).abs().mean().item() for i in range(s.shape[0])]
    return loss_weight * sum(a * h for a, h in zip(alphas, per)) / s.shape[0]


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 5, 6, 7, generator=g)
    t = torch.randn(4, 5, 6, 7, generator=g)
    w = torch.tensor([1.0, 0.5, 0.2, 0.0])
    return s, t, w


@pytest.mark.parametrize('t_iter', [0, 1, 25, 50, 51, 99])
def test_wdpd_follows_eq13(batch, t_iter):
    s, t, w = batch
    loss = WDPDLoss(mode='wdpd', ramp=0.5, loss_weight=2.0)
    loss.set_progress(t_iter, 100)
    alphas = [eq13_alpha(wi, t_iter, 100) for wi in w.tolist()]
    expected = reference(s, t, w, alphas, loss_weight=2.0)
    assert loss(s, t, w).item() == pytest.approx(expected, rel=LOSS_RTOL)
    assert loss.last_alpha.tolist() == pytest.approx(alphas, rel=1e-6)


def test_wdpd_alpha_schedule_endpoints():
    loss = WDPDLoss(mode='wdpd', ramp=0.5)
    w = torch.tensor([0.0, 0.4, 1.0])
    loss.set_progress(0, 1000)
    assert loss.alpha(w).tolist() == pytest.approx([0.0, 0.4, 1.0])  # t = 0: alpha = w
    loss.set_progress(250, 1000)
    assert loss.alpha(w).tolist() == pytest.approx([0.5, 0.7, 1.0])  # half way up the ramp
    loss.set_progress(500, 1000)
    assert loss.alpha(w).tolist() == pytest.approx([1.0, 1.0, 1.0])  # t = r*I
    loss.set_progress(900, 1000)
    assert loss.alpha(w).tolist() == pytest.approx([1.0, 1.0, 1.0])
    other = WDPDLoss(mode='wdpd', ramp=0.25)
    other.set_progress(125, 1000)
    assert other.alpha(w).tolist() == pytest.approx([0.5, 0.7, 1.0])


@pytest.mark.parametrize('t_iter', [0, 30, 90])
def test_vanilla_and_wdd_ignore_progress(batch, t_iter):
    s, t, w = batch
    vanilla, wdd = WDPDLoss(mode='vanilla'), WDPDLoss(mode='wdd')
    for loss in (vanilla, wdd):
        loss.set_progress(t_iter, 100)
    assert vanilla(s, t, w).item() == pytest.approx(reference(s, t, w, [1.0] * 4), rel=LOSS_RTOL)
    assert wdd(s, t, w).item() == pytest.approx(reference(s, t, w, w.tolist()), rel=LOSS_RTOL)
    # vanilla equals a plain mean absolute error over the batch
    assert vanilla(s, t, w).item() == pytest.approx((s - t).abs().mean().item(), rel=LOSS_RTOL)


def test_gradient_reaches_student_only(batch):
    s, t, w = batch
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    WDPDLoss(mode='wdd')(s, t, w).backward()
    assert s.grad is not None and s.grad[3].abs().sum() == 0  # w = 0 sample contributes nothing
    assert t.grad is None


def test_errors_are_clear(batch):
    s, t, w = batch
    with pytest.raises(RuntimeError, match='WDPDHook'):
        WDPDLoss(mode='wdpd')(s, t, w)
    with pytest.raises(ValueError, match='mode'):
        WDPDLoss(mode='bogus')
    with pytest.raises(ValueError, match='shape'):
        WDPDLoss(mode='vanilla')(s, t[:, :3], w)
    with pytest.raises(ValueError, match=r'\(4,\)'):
        WDPDLoss(mode='vanilla')(s, t, w[:2])
    with pytest.raises(ValueError, match='max_iters'):
        WDPDLoss().set_progress(0, 0)
    assert WDPDLoss().loss_name == 'loss_wdpd'
