"""WDPDHook drives Eq. 13's t/I from the runner, for iteration and epoch loops, and
logs the mean alpha."""
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import Runner

from mmseg_dfss.engine import WDPDHook
from mmseg_dfss.models import WDPDLoss

WEIGHTS = torch.tensor([0.2, 0.6])


class ToyDistiller(BaseModel):
    """Holds a WDPDLoss like DataFreeDistiller; records the progress it saw."""

    def __init__(self):
        super().__init__()
        self.student = nn.Linear(3, 3)
        self.distill_loss = WDPDLoss(mode='wdpd', ramp=0.5)
        self.seen = []

    def forward(self, inputs, data_samples=None, mode='loss'):
        x = torch.stack(inputs)
        out = self.student(x)[:, :, None, None]
        self.seen.append((self.distill_loss.cur_iter, self.distill_loss.max_iters))
        return {'loss_wdpd': self.distill_loss(out, out.detach() + 1, WEIGHTS[:len(x)])}


@MODEL_WRAPPERS.register_module(name='_WDPDTestWrapper', force=True)
class Wrapper(nn.Module):
    """Stands in for DDP: the hook must look inside ``.module``."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def train_step(self, *args, **kwargs):
        return self.module.train_step(*args, **kwargs)


def run(tmp_path, train_cfg, wrap=False):
    model = ToyDistiller()
    # an iteration loop reads an infinite sampler, as the DFSS configs' does (over a
    # finite one MMEngine restarts the loader at each epoch end, after a 2 s sleep)
    sampler = 'DefaultSampler' if train_cfg.get('by_epoch') else 'InfiniteSampler'
    runner = Runner(
        model=Wrapper(model) if wrap else model,
        work_dir=str(tmp_path),
        train_dataloader=dict(dataset=[dict(inputs=torch.ones(3))] * 4, batch_size=2,
                              sampler=dict(type=sampler, shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=train_cfg,
        custom_hooks=[dict(type=WDPDHook)],
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        default_scope='mmseg')
    alphas = []


    from mmengine.hooks import Hook

    class AlphaRecorder(Hook):
        priority = 'VERY_LOW'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            alphas.append(runner.message_hub.get_scalar('train/wdpd_alpha').current())

    runner.register_hook(AlphaRecorder())
    runner.train()
    return model.seen, alphas


def expected_alpha(t, total):
    w = WEIGHTS
    a = torch.where(torch.tensor(t <= 0.5 * total), w + (1 - w) * t / (0.5 * total),
                    torch.ones_like(w))
    return a.mean().item()


@pytest.mark.parametrize('wrap', [False, True])
def test_iteration_loop(tmp_path, wrap):
    seen, alphas = run(tmp_path, dict(by_epoch=False, max_iters=8), wrap=wrap)
    assert seen == [(t, 8) for t in range(8)]
    assert alphas == pytest.approx([expected_alpha(t, 8) for t in range(8)])
    assert alphas[0] == pytest.approx(0.4) and alphas[-1] == pytest.approx(1.0)


def test_epoch_loop(tmp_path):
    # 4 samples, batch 2: 2 iterations per epoch, I = 3 epochs x 2 = 6
    seen, alphas = run(tmp_path, dict(by_epoch=True, max_epochs=3))
    assert seen == [(t, 6) for t in range(6)]
    assert alphas == pytest.approx([expected_alpha(t, 6) for t in range(6)])


def test_model_without_wdpd_loss_is_an_error(tmp_path):
    class Plain(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, inputs, data_samples=None, mode='loss'):
            return {'loss': self.fc(torch.stack(inputs)).sum()}

    runner = Runner(
        model=Plain(), work_dir=str(tmp_path),
        train_dataloader=dict(dataset=[dict(inputs=torch.ones(3))] * 2, batch_size=2,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=1), custom_hooks=[dict(type=WDPDHook)])
    with pytest.raises(RuntimeError, match='no WDPDLoss'):
        runner.train()
