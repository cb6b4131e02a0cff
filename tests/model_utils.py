"""Helpers shared by tests that need a teacher with meaningful BN statistics, and an
Eq. 9 reference computed apart from the library."""
import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm


def randomise_bn(model, seed=0):
    """Random init leaves running stats at 0/1; give them values like a trained net's."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return model


def eq9_distance(model, x, prefix='backbone.'):
    """Eq. 9 for one sample (``x``: (1, C, H, W), normalised), computed apart from the
    library's BNStatsDistance: forward hooks on every BN layer whose name starts with
    ``prefix``, a full tensor forward, numpy statistics (biased variance).
    Returns ``(d, number of BN layers that ran)``."""
    inputs = {}
    handles = [m.register_forward_hook(lambda mod, a, out, n=n: inputs.__setitem__(n, a[0]))
               for n, m in model.named_modules()
               if isinstance(m, _BatchNorm) and n.startswith(prefix)]
    try:
        with torch.no_grad():
            model(x, None, mode='tensor')
    finally:
        for h in handles:
            h.remove()
    mods = dict(model.named_modules())
    total = 0.0
    for n, feat in inputs.items():
        f = feat[0].numpy().astype(np.float64).reshape(feat.shape[1], -1)
        rm = mods[n].running_mean.numpy().astype(np.float64)
        rv = mods[n].running_var.numpy().astype(np.float64)
        total += np.linalg.norm(f.mean(1) - rm) + np.linalg.norm(f.var(1) - rv)
    return total, len(inputs)
