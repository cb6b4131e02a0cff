"""Image families with known character for pool comparisons, and a teacher whose BN
running statistics are set from one family's features (so ADS ranks deterministically).

All images are grey (three equal channels): every grey conversion gives the same
levels, so entropies can be recomputed independently with numpy.
"""
import os
import os.path as osp

import numpy as np
import torch
from PIL import Image
from torch.nn.modules.batchnorm import _BatchNorm

SIZE = 48


def scene(rng, size=SIZE):
    """'In-domain' family: a smooth gradient with a few soft-edged rectangles."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    a, b = rng.uniform(-1, 1, 2)
    img = 110 + 50 * (a * xx + b * yy)
    for _ in range(3):
        y0, x0 = rng.integers(0, size - 12, 2)
        h, w = rng.integers(8, 20, 2)
        img[y0:y0 + h, x0:x0 + w] += rng.uniform(-40, 40)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def noise(rng, size=SIZE):
    """'Out-of-domain' family: uniform grey noise (about 8 bits of entropy)."""
    return rng.integers(0, 256, (size, size), dtype=np.uint8)


def posterized(rng, size=SIZE):
    """A scene reduced to 4 grey levels (at most 2 bits of entropy)."""
    return (scene(rng, size) // 64 * 64 + 32).astype(np.uint8)


FAMILIES = dict(scene=scene, noise=noise, posterized=posterized)


def write_grey(path, grey):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(np.stack([grey] * 3, -1)).save(path)
    return path


def write_family(folder, family, n, seed, prefix='img'):
    """``n`` images of ``family`` as ``folder/<prefix>_<k>.png``; returns the paths."""
    rng = np.random.default_rng(seed)
    return [write_grey(osp.join(folder, f'{prefix}_{k:03d}.png'), FAMILIES[family](rng))
            for k in range(n)]


def grey_of(path):
    arr = np.asarray(Image.open(path).convert('RGB'))
    assert (arr == arr[..., :1]).all(), f'{path} is not grey'
    return arr[..., 0]


def numpy_entropy(path):
    """Shannon entropy (bits) of the 256-bin histogram, computed with numpy only."""
    counts, _ = np.histogram(grey_of(path), bins=256, range=(0, 256))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def normalised(paths):
    """(N, 3, H, W) float32 inputs as the teacher's preprocessor gives them
    (mean = std = 127.5; grey, so the channel order does not matter)."""
    arrs = [np.stack([grey_of(p)] * 3, 0).astype(np.float32) for p in paths]
    return (torch.from_numpy(np.stack(arrs)) - 127.5) / 127.5


class _Seen(Exception):
    """Ends a calibration forward once the layer being calibrated has seen its input."""


def calibrate_bn(model, inputs, prefix='backbone.'):
    """Sets every BN layer under ``prefix`` to the mean and biased variance of its
    input over ``inputs``, layer by layer in execution order (each later layer sees
    its input through the already calibrated ones): the running statistics a
    teacher trained on that family would carry."""
    layers = [(n, m) for n, m in model.named_modules()
              if isinstance(m, _BatchNorm) and n.startswith(prefix)]
    model.eval()
    for name, bn in layers:
        seen = {}

        def hook(module, args):
            x = args[0].detach().double()
            seen['mean'] = x.mean(dim=(0, 2, 3))
            seen['var'] = x.var(dim=(0, 2, 3), unbiased=False)
            raise _Seen  # the rest of the forward cannot change this layer's input

        handle = bn.register_forward_pre_hook(hook)
        try:
            with torch.no_grad():
                model(inputs, None, mode='tensor')
        except _Seen:
            pass
        finally:
            handle.remove()
        bn.running_mean.copy_(seen['mean'].to(bn.running_mean.dtype))
        bn.running_var.copy_(seen['var'].to(bn.running_var.dtype))
    return model


def scene_teacher_checkpoint(teacher_cfg, folder, seed=0, n=16):
    """A random-weight teacher whose backbone BN statistics are those of the
    'scene' family; saved as an MMEngine-style checkpoint; returns its path."""
    from mmseg.registry import MODELS

    from mmseg_dfss.core import load_model_config
    torch.manual_seed(seed)
    model = MODELS.build(load_model_config(teacher_cfg))  # random weights
    model.init_weights()
    calib = write_family(osp.join(folder, 'calibration'), 'scene', n, seed=1000 + seed)
    calibrate_bn(model, normalised(calib))
    path = osp.join(folder, 'scene_teacher.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path
