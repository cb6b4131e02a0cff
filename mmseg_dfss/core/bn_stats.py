"""Per-sample BatchNorm statistics distance of ADS (paper Sec. 3.3, Eq. 8-9).

Forward pre-hooks on the teacher's selected ``_BatchNorm`` layers (SyncBN
included) read each layer's *input*, because ``running_mean``/``running_var``
describe that input. For sample i and layer l, ``m`` is the mean and ``v`` the
biased variance over H, W per channel, and

    d_i = sum_l ||m_il - running_mean_l||_2 + ||v_il - running_var_l||_2   (Eq. 9)

Statistics are per sample, never per batch, so d does not depend on the batch
size. Padding would change them, so callers batch only images of one size (see
:class:`mmseg_dfss.core.pool_scorer.PoolScorer`). Once the last hooked layer has
run the forward is stopped, so with backbone layers the decode head never runs.
"""
import re

import torch
from mmengine.logging import print_log
from torch.nn.modules.batchnorm import _BatchNorm

# How closely a per-image score is reproduced, relative to its size: an image's d
# (and its 'confidence' score) agrees within this across batch sizes and batch
# contents, loader processes, 1 or more ranks, thread counts, CPU kernels
# (ATEN_CPU_CAPABILITY) and a float64 computation of the statistics. The features
# are float32 (relative rounding ~1e-7 per operation, compounded over the layers);
# scores read back from the score cache are bitwise the ones written.
SCORE_RTOL = 1e-5


class _StopForward(Exception):
    """Raised from the last hook to end the forward early."""


def select_bn_layers(model, bn_layers='backbone'):
    """The ``(name, module)`` pairs of the ``_BatchNorm`` layers ADS hooks.

    Args:
        bn_layers: ``'backbone'`` (every BN layer under ``model.backbone``, the
            paper's feature extractor), ``'all'``, or a list of regexes matched
            with ``re.search`` against module names (e.g. ``['^backbone\\.layer4']``).
    """
    if bn_layers == 'backbone':
        keep = lambda name: name.startswith('backbone.')  # noqa: E731
    elif bn_layers == 'all':
        keep = lambda name: True  # noqa: E731
    elif isinstance(bn_layers, (list, tuple)) and bn_layers and all(
            isinstance(p, str) for p in bn_layers):
        patterns = [re.compile(p) for p in bn_layers]
        keep = lambda name: any(p.search(name) for p in patterns)  # noqa: E731
    else:
        raise ValueError("bn_layers must be 'backbone', 'all' or a non-empty list of "
                         f'module-name regexes, got {bn_layers!r}')
    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, _BatchNorm) and keep(name)]
    if not layers:
        all_bn = [name for name, m in model.named_modules() if isinstance(m, _BatchNorm)]
        shown = ', '.join(all_bn[:8]) + (' ...' if len(all_bn) > 8 else '')
        raise ValueError(f'bn_layers={bn_layers!r} selects no BatchNorm layer of the teacher '
                         f'(its BatchNorm layers: [{shown}]). '
                         + _no_bn_advice(model, bn_layers, all_bn))
    for name, m in layers:
        if not m.track_running_stats or m.running_mean is None:
            raise ValueError(f'BatchNorm layer {name!r} keeps no running statistics '
                             '(track_running_stats=False); ADS needs them')
    return layers


def _norm_types(module):
    """Class names of the normalisation layers in ``module`` (e.g. ``LayerNorm``)."""
    return sorted({type(m).__name__ for m in module.modules()
                   if 'Norm' in type(m).__name__ and not isinstance(m, _BatchNorm)})


def _no_bn_advice(model, bn_layers, all_bn):
    """Why ``bn_layers`` found no BN layer, and which ``bn_layers`` to set instead."""
    why = ''
    backbone = getattr(model, 'backbone', None)
    if bn_layers == 'backbone' and backbone is not None:
        norms = _norm_types(backbone)
        why = (f'The teacher backbone ({type(backbone).__name__}) has no BatchNorm'
               + (f'; it normalises with {", ".join(norms)}, which keeps no running '
                  'statistics' if norms else '') + '. ')
    # BN layers that run in the segmentor's tensor forward (an auxiliary head's never do)
    parts = []
    for name in all_bn:
        part = name.split('.', 1)[0]
        if part != 'auxiliary_head' and part not in parts:
            parts.append(part)
    if not parts:
        return (why + "ADS (strategy='ads', Eq. 9) needs BatchNorm running statistics in the "
                "layers the teacher's forward runs, and this teacher has none: use "
                "strategy='confidence' or strategy='random' instead")
    count = sum(1 for name in all_bn if name.split('.', 1)[0] in parts)
    regexes = [rf'^{p}\.' for p in parts]
    return (why + f'Set bn_layers={regexes!r} (its {count} BatchNorm layers outside an '
            "auxiliary head, which never runs in the teacher's forward) or bn_layers='all' "
            '(the key is train_dataloader.dataset.bn_layers in a DFSS config)')


def sample_channel_stats(x):
    """Per-sample, per-channel mean and biased variance over all spatial dims.

    ``x`` is (N, C, *spatial) (or (N, C)); returns two float64 (N, C) tensors.
    Two passes in float32 (mean, then mean squared deviation), widened to
    float64 afterwards: on CPU this is ~5x faster than ``torch.var_mean`` and
    than a float64 copy of every feature map, which dominated scoring time.
    """
    flat = x.detach().reshape(x.shape[0], x.shape[1], -1)
    if flat.dtype != torch.float32 and flat.dtype != torch.float64:
        flat = flat.float()
    mean = flat.mean(dim=2)
    var = (flat - mean.unsqueeze(2)).square_().mean(dim=2)
    return mean.double(), var.double()


def layer_distance(x, bn):
    """Eq. 9 for one layer: (N,) float64 distances of the samples in ``x``."""
    mean, var = sample_channel_stats(x)
    rm = bn.running_mean.detach().double().to(mean.device)
    rv = bn.running_var.detach().double().to(mean.device)
    return (mean - rm).norm(dim=1) + (var - rv).norm(dim=1)


class BNStatsDistance:
    """Computes the ADS distance d (Eq. 9, summed over layers) per sample.

    Usage::

        scorer = BNStatsDistance(teacher, 'backbone')
        d = scorer(inputs)       # inputs: preprocessed (N, 3, H, W), one size
        scorer.remove()

    The first call learns the order in which the hooked layers execute (it stops
    as soon as every selected layer has run; layers that never run in the
    segmentor's tensor forward, e.g. an auxiliary head's, are dropped with a
    warning). From then on the forward stops at the last hooked layer.

    Args:
        model: an MMSeg segmentor (eval mode).
        bn_layers: see :func:`select_bn_layers`.
        per_layer: also keep the (N, L) per-layer distances in ``last_per_layer``.
    """

    def __init__(self, model, bn_layers='backbone', per_layer=False):
        self.model = model
        self.layers = select_bn_layers(model, bn_layers)
        self.bn_layers = bn_layers
        self.per_layer = per_layer
        self._by_name = dict(self.layers)
        self._order = None
        self._last = None
        self._probing = False
        self._dists = {}
        self._handles = [m.register_forward_pre_hook(self._make_hook(name))
                         for name, m in self.layers]

    @property
    def layer_names(self):
        """Names of the hooked layers (execution order once known)."""
        return list(self._order) if self._order is not None else [n for n, _ in self.layers]

    def _make_hook(self, name):

        def hook(module, args):
            if name in self._dists:
                raise RuntimeError(f'BatchNorm layer {name!r} ran twice in one forward; a '
                                   'shared BN layer cannot be scored per input')
            self._dists[name] = layer_distance(args[0], module)
            if self._probing:
                self._order.append(name)
                if len(self._order) == len(self.layers):
                    raise _StopForward
            elif name == self._last:
                raise _StopForward

        return hook

    def _run(self, inputs):
        self._dists = {}
        try:
            with torch.no_grad():
                self.model(inputs, None, mode='tensor')
        except _StopForward:
            pass

    def _probe(self, inputs):
        self._order = []
        self._probing = True
        try:
            self._run(inputs)
        finally:
            self._probing = False
        never = [n for n, _ in self.layers if n not in self._order]
        if never:
            print_log(f'ADS: {len(never)} selected BatchNorm layer(s) never run in the '
                      f'teacher forward and are left out: {never[:8]}', logger='current',
                      level=30)
        if not self._order:
            raise ValueError(f'bn_layers={self.bn_layers!r}: none of the selected BatchNorm '
                             'layers runs in the teacher forward')
        self._last = self._order[-1]

    def __call__(self, inputs):
        """(N,) float64 distances for a batch of equally sized preprocessed inputs."""
        if self._order is None:
            self._probe(inputs)
        else:
            self._run(inputs)
        missing = [n for n in self._order if n not in self._dists]
        if missing:
            raise RuntimeError(f'ADS: BatchNorm layers {missing[:8]} did not run in this forward')
        per_layer = torch.stack([self._dists[n] for n in self._order], dim=1)
        self._dists = {}
        if self.per_layer:
            self.last_per_layer = per_layer
        return per_layer.sum(dim=1)

    def remove(self):
        """Removes the hooks from the model."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
