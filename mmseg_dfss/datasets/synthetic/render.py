"""Numpy drawing primitives shared by the synthetic scene and pool generators.

Images are float32 (H, W, 3) in [0, 255] while drawing; masks are boolean (H, W).
"""
import numpy as np


def grid(h, w):
    """Pixel-centre coordinates (ys, xs), each (H, W) float32."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return ys + 0.5, xs + 0.5


def hsv_to_rgb(h, s, v):
    """Scalar HSV in [0, 1] to an RGB triple in [0, 255]."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float32) * 255.0


def smooth_noise(rng, h, w, scale):
    """Value noise: a coarse random grid upsampled bilinearly, in [0, 1]."""
    gh, gw = max(2, int(np.ceil(h / scale)) + 1), max(2, int(np.ceil(w / scale)) + 1)
    coarse = rng.random((gh, gw)).astype(np.float32)
    ys = np.linspace(0, gh - 1.001, h, dtype=np.float32)
    xs = np.linspace(0, gw - 1.001, w, dtype=np.float32)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = coarse[y0][:, x0]
    b = coarse[y0][:, x0 + 1]
    c = coarse[y0 + 1][:, x0]
    d = coarse[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def fill(img, mask, color, texture=None, strength=0.0):
    """Paint ``color`` where ``mask``; ``texture`` in [0, 1] modulates brightness."""
    if texture is None:
        img[mask] = color
    else:
        shade = 1.0 + strength * (texture[mask] - 0.5)
        img[mask] = color[None, :] * shade[:, None]


def polygon_mask(h, w, pts):
    """Mask of a convex polygon given as [(x, y), ...] in clockwise image order."""
    ys, xs = grid(h, w)
    mask = np.ones((h, w), dtype=bool)
    n = len(pts)
    for k in range(n):
        (x0, y0), (x1, y1) = pts[k], pts[(k + 1) % n]
        mask &= (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0) >= 0
    return mask


def rect_mask(h, w, x0, y0, x1, y1):
    ys, xs = grid(h, w)
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def ellipse_mask(h, w, cx, cy, rx, ry):
    ys, xs = grid(h, w)
    return ((xs - cx) / rx)**2 + ((ys - cy) / ry)**2 <= 1.0


def triangle_mask(h, w, cx, cy, r):
    pts = [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    return polygon_mask(h, w, pts)


def stripes(h, w, period, angle, phase=0.0):
    """Sinusoidal stripes in [0, 1]."""
    ys, xs = grid(h, w)
    u = xs * np.cos(angle) + ys * np.sin(angle)
    return 0.5 + 0.5 * np.sin(2 * np.pi * u / period + phase)


def checker(h, w, cell):
    ys, xs = grid(h, w)
    return (((ys // cell) + (xs // cell)) % 2).astype(np.float32)


def lighting(rng, h, w, ambient, falloff):
    """Multiplicative light field: ambient level plus a point light's radial falloff."""
    ys, xs = grid(h, w)
    ly, lx = rng.uniform(-0.2, 0.6) * h, rng.uniform(0, 1) * w
    dist = np.sqrt((ys - ly)**2 + (xs - lx)**2) / np.hypot(h, w)
    return ambient * (1.0 - falloff * dist)


def finish(rng, img, light, noise_std):
    """Apply the light field and sensor noise; quantise to uint8."""
    img = img * light[..., None]
    img = img + rng.normal(0.0, noise_std, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
