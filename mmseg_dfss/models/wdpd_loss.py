"""Weighted distribution (progressive) distillation loss, paper Sec. 3.4 (Eq. 10-13)."""
import torch
import torch.nn as nn
from mmseg.registry import MODELS

MODES = ('vanilla', 'wdd', 'wdpd')
# The loss is float32 means: it equals Eq. 10/12 computed another way (another order
# of the sums, per sample or per batch, a sample's logits from another batch, a
# float64 reference) within this, relative to its value.
LOSS_RTOL = 1e-5


def _widen(x):
    """fp16/bf16 -> fp32; fp32/fp64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def masked_sample_mean(x, valid_shapes=None):
    """(B,) mean of each sample of ``x`` (B, C, H, W) over its top-left
    ``valid_shapes[i] = (h, w)`` pixels (all pixels when None)."""
    batch, _, height, width = x.shape
    if valid_shapes is None:
        return x.flatten(1).mean(dim=1)
    shapes = [tuple(int(v) for v in hw) for hw in valid_shapes]
    if len(shapes) != batch or any(len(hw) != 2 for hw in shapes):
        raise ValueError(f'WDPDLoss: valid_shapes must hold one (h, w) per sample of the '
                         f'batch of {batch}, got {valid_shapes!r}')
    bad = [hw for hw in shapes if not (0 < hw[0] <= height and 0 < hw[1] <= width)]
    if bad:
        raise ValueError(f'WDPDLoss: valid shapes {bad} are empty or exceed the '
                         f'{height}x{width} logits')
    if all(hw == (height, width) for hw in shapes):
        return x.flatten(1).mean(dim=1)
    return torch.stack([x[i, :, :h, :w].mean() for i, (h, w) in enumerate(shapes)])


@MODELS.register_module()
class WDPDLoss(nn.Module):
    """L1 distillation between student and teacher logits, weighted per sample.

    ``forward`` returns ``loss_weight * (1/B) * sum_i alpha_i(t) * H_l1(i)`` with
    ``H_l1(i)`` the mean over classes and sample i's real (unpadded) pixels of
    ``|s_i - t_i|`` (Eq. 10/12), computed in fp32 under mixed precision, and

    - ``vanilla``: alpha_i = 1 (plain L1 distillation, DFAD's loss);
    - ``wdd``: alpha_i = w_i (Eq. 10);
    - ``wdpd``: alpha_i(t) = w_i + (1 - w_i) * t / (r*I) for t <= r*I, else 1
      (Eq. 13 with the paper's r = 1/2 as ``ramp``), t the current and I the total
      training iterations, set by :meth:`set_progress` (``WDPDHook`` does it).

    Args:
        mode (str): 'vanilla' | 'wdd' | 'wdpd'.
        ramp (float): r, the fraction of training over which alpha rises to 1.
        loss_weight (float): factor on the loss.
        loss_name (str): key of the loss in the loss dict; must start with
            ``loss_`` so MMEngine sums, back-propagates and logs it.
    """

    def __init__(self, mode='wdpd', ramp=0.5, loss_weight=1.0, loss_name='loss_wdpd'):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f'WDPDLoss: mode must be one of {MODES}, got {mode!r}')
        if not 0 <= ramp <= 1:
            raise ValueError(f'WDPDLoss: ramp must be in [0, 1], got {ramp}')
        if not loss_name.startswith('loss_'):
            raise ValueError(f'WDPDLoss: loss_name must start with "loss_" (MMEngine only '
                             f'back-propagates such keys), got {loss_name!r}')
        self.mode = mode
        self.ramp = float(ramp)
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name
        self.cur_iter = None
        self.max_iters = None
        self.last_alpha = None

    @property
    def loss_name(self):
        return self._loss_name

    def set_progress(self, cur_iter, max_iters):
        """t = ``cur_iter`` (0-based) of I = ``max_iters`` training iterations."""
        if max_iters is None or max_iters <= 0:
            raise ValueError(f'WDPDLoss.set_progress: max_iters must be > 0, got {max_iters}')
        if cur_iter < 0:
            raise ValueError(f'WDPDLoss.set_progress: cur_iter must be >= 0, got {cur_iter}')
        self.cur_iter = int(cur_iter)
        self.max_iters = int(max_iters)

    def alpha(self, weights):
        """alpha_i(t) of Eq. 13 (or its 'vanilla'/'wdd' special cases) for w_i = ``weights``."""
        if self.mode == 'vanilla':
            return torch.ones_like(weights)
        if self.mode == 'wdd':
            return weights
        if self.max_iters is None:
            raise RuntimeError(
                "WDPDLoss(mode='wdpd') needs the training progress t/I (Eq. 13): add "
                "dict(type='WDPDHook') to custom_hooks, or call set_progress() yourself")
        ramp_iters = self.ramp * self.max_iters
        if self.cur_iter > ramp_iters or ramp_iters == 0:
            return torch.ones_like(weights)
        return weights + (1 - weights) * (self.cur_iter / ramp_iters)

    def forward(self, student_logits, teacher_logits, weights=None, valid_shapes=None):
        """student_logits, teacher_logits: (B, C, H, W); weights: (B,) w_i, None = all 1;
        valid_shapes: per sample ``(h, w)`` of its real pixels, the top-left part of the
        map (MMSeg pads right and bottom), None = all pixels are real.

        H_l1(i) is the mean over sample i's real pixels only, so padding changes
        nothing. Half-precision logits (``--amp``) are widened: the loss is fp32.
        """
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(f'WDPDLoss: student logits {tuple(student_logits.shape)} and teacher '
                             f'logits {tuple(teacher_logits.shape)} differ in shape')
        student_logits = _widen(student_logits)
        teacher_logits = _widen(teacher_logits)
        batch = student_logits.shape[0]
        if weights is None:
            weights = student_logits.new_ones(batch)
        weights = torch.as_tensor(weights, dtype=student_logits.dtype,
                                  device=student_logits.device)
        if weights.shape != (batch, ):
            raise ValueError(f'WDPDLoss: weights must have shape ({batch},), '
                             f'got {tuple(weights.shape)}')
        if not torch.isfinite(weights).all():
            raise ValueError(f'WDPDLoss: non-finite sample weights {weights.tolist()}')
        alpha = self.alpha(weights)
        self.last_alpha = alpha.detach()
        diff = (student_logits - teacher_logits.detach()).abs()
        per_sample = masked_sample_mean(diff, valid_shapes)
        return self.loss_weight * (alpha * per_sample).mean()

    def extra_repr(self):
        return f'mode={self.mode!r}, ramp={self.ramp}, loss_weight={self.loss_weight}'
