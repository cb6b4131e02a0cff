"""Feeds the training progress t/I of Eq. 13 to the WDPD loss."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ..models.wdpd_loss import WDPDLoss


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class WDPDHook(Hook):
    """Before every training iteration, calls ``set_progress(runner.iter,
    runner.max_iters)`` on each :class:`WDPDLoss` of the model (DDP unwrapped);
    ``runner.max_iters`` is the total iteration count for iteration- and
    epoch-based loops alike. After each iteration it puts the batch's mean
    alpha_i(t) in the message hub as ``train/wdpd_alpha`` so the schedule shows in
    the training log next to the loss."""

    priority = 'NORMAL'

    def __init__(self, log_alpha=True):
        self.log_alpha = log_alpha

    @staticmethod
    def _losses(runner):
        losses = [m for m in unwrap(runner.model).modules() if isinstance(m, WDPDLoss)]
        if not losses:
            raise RuntimeError('WDPDHook: the model has no WDPDLoss module; remove the hook '
                               'or use a DataFreeDistiller with distill_loss=WDPDLoss')
        return losses

    def before_train(self, runner):
        self._losses(runner)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        for loss in self._losses(runner):
            loss.set_progress(runner.iter, runner.max_iters)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not self.log_alpha:
            return
        alphas = [loss.last_alpha for loss in self._losses(runner)
                  if loss.last_alpha is not None]
        if alphas:
            runner.message_hub.update_scalar('train/wdpd_alpha',
                                             float(sum(a.mean() for a in alphas) / len(alphas)))
