"""Helpers shared by tests that need a teacher with meaningful BN statistics."""
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
