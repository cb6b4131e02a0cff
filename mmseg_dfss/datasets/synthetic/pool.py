"""The synthetic open-world pool: unlabeled images from named sub-domains.

The sub-domains stand in for what an open-world pool like COCO mixes, from most to
least relevant to the original rooms domain:

``near_rooms``
    rooms from the same layout generator with shifted palettes, lighting and tint;
    each image draws its own shift strength, so some are close to the original
    domain and some far (COCO's indoor scenes).
``streets``
    a different coherent layout: sky, buildings with window grids, road, cars,
    trees (rich scenes of another task).
``objects``
    one large object on a plain or gradient background (object-centric,
    ImageNet-like, low information).
``textures``
    stripes, checkers, smooth and white noise (no scene structure at all).

Every image is tagged with its sub-domain; the pool has no labels.
"""
import numpy as np

from . import render as R
from .rooms import RoomSceneGenerator, RoomStyle

SUBDOMAINS = ('near_rooms', 'streets', 'objects', 'textures')
DEFAULT_MIX = {'near_rooms': 0.3, 'streets': 0.25, 'objects': 0.25, 'textures': 0.2}


def shifted_room_style(rng, strength):
    """A RoomStyle moved away from the original one by ``strength`` in [0, 1]."""
    base = RoomStyle()

    def lerp(a, b):
        return tuple(x + strength * (y - x) for x, y in zip(a, b))

    hue = rng.uniform(0, 1)
    tint = tuple(1.0 + strength * rng.uniform(-0.35, 0.35) for _ in range(3))
    return RoomStyle(
        wall_sat=lerp(base.wall_sat, (0.45, 0.85)),
        wall_val=lerp(base.wall_val, (0.35, 0.75)),
        wall_hue=lerp(base.wall_hue, (hue, hue + 0.08)),
        floor_hue=lerp(base.floor_hue, (hue + 0.3, hue + 0.4)),
        floor_sat=base.floor_sat,
        floor_val=lerp(base.floor_val, (0.15, 0.9)),
        furniture_val=lerp(base.furniture_val, (0.5, 0.95)),
        ambient=lerp(base.ambient, (0.45, 1.45)),
        falloff=base.falloff,
        tint=tint,
        noise_std=base.noise_std + 8.0 * strength)


def street(rng, s):
    h = w = s
    img = np.zeros((h, w, 3), np.float32)
    horizon = rng.uniform(0.35, 0.55) * h
    ys, xs = R.grid(h, w)
    sky_top = R.hsv_to_rgb(rng.uniform(0.55, 0.65), rng.uniform(0.3, 0.7), rng.uniform(0.7, 1.0))
    img[:] = sky_top * (0.8 + 0.2 * (ys / h))[..., None]
    x = -rng.uniform(0, 10)
    while x < w:  # buildings along the horizon
        bw, bh = rng.uniform(0.12, 0.3) * w, rng.uniform(0.15, 0.45) * h
        col = R.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.05, 0.4), rng.uniform(0.3, 0.8))
        m = R.rect_mask(h, w, x, horizon - bh, x + bw, horizon + 2)
        R.fill(img, m, col)
        win = m & ((ys % 6) < 3) & ((xs % 5) < 2) & (ys < horizon - 3)
        img[win] = R.hsv_to_rgb(0.15, 0.3, rng.uniform(0.2, 0.9))
        x += bw + rng.uniform(0, 4)
    road = R.polygon_mask(h, w, [(0, horizon), (w, horizon), (w, h), (0, h)])
    R.fill(img, road, np.array([80.0, 80, 85]) * rng.uniform(0.7, 1.2), R.smooth_noise(rng, h, w, 4), 0.2)
    lane = road & (np.abs(xs - w / 2) < 1.0 + (ys - horizon) / h * 2) & ((ys % 8) < 4)
    img[lane] = 230
    for _ in range(int(rng.integers(1, 4))):
        cw = rng.uniform(0.15, 0.28) * w
        cy = rng.uniform(horizon + 4, h - 4)
        cx = rng.uniform(0, w)
        body = R.rect_mask(h, w, cx - cw / 2, cy - cw * 0.35, cx + cw / 2, cy)
        R.fill(img, body, R.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.5, 1), rng.uniform(0.4, 1)))
        for dx in (-cw / 3, cw / 3):
            img[R.ellipse_mask(h, w, cx + dx, cy, cw * 0.1, cw * 0.1)] = 20
    for _ in range(int(rng.integers(0, 3))):
        tx, r = rng.uniform(0, w), rng.uniform(0.06, 0.12) * s
        img[R.rect_mask(h, w, tx - 1.5, horizon - r, tx + 1.5, horizon + r)] = [70, 45, 20]
        R.fill(img, R.ellipse_mask(h, w, tx, horizon - r * 1.5, r, r * 1.2),
               R.hsv_to_rgb(rng.uniform(0.22, 0.38), 0.7, rng.uniform(0.3, 0.7)),
               R.smooth_noise(rng, h, w, 2), 0.5)
    light = R.lighting(rng, h, w, rng.uniform(0.8, 1.2), rng.uniform(0.0, 0.4))
    return R.finish(rng, img, light, 4.0)


def object_centric(rng, s):
    h = w = s
    ys, _ = R.grid(h, w)
    bg = R.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 0.3), rng.uniform(0.5, 1.0))
    img = np.empty((h, w, 3), np.float32)
    img[:] = bg * (1.0 - rng.uniform(0, 0.3) * ys / h)[..., None]
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
    r = rng.uniform(0.18, 0.35) * s
    kind = rng.integers(3)
    m = (R.ellipse_mask(h, w, cx, cy, r, r * rng.uniform(0.7, 1.0)) if kind == 0 else
         R.rect_mask(h, w, cx - r, cy - r, cx + r, cy + r) if kind == 1 else
         R.triangle_mask(h, w, cx, cy, r))
    col = R.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.5, 1.0), rng.uniform(0.4, 1.0))
    R.fill(img, m, col, R.smooth_noise(rng, h, w, 8), 0.3)
    return R.finish(rng, img, np.ones((h, w), np.float32), 2.0)


def texture(rng, s):
    h = w = s
    kind = rng.integers(4)
    if kind == 0:
        t = R.stripes(h, w, rng.uniform(3, 20), rng.uniform(0, np.pi))
    elif kind == 1:
        t = R.checker(h, w, int(rng.integers(3, 16)))
    elif kind == 2:
        t = R.smooth_noise(rng, h, w, rng.uniform(2, 16))
    else:
        t = rng.random((h, w)).astype(np.float32)
    c0 = R.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0, 1))
    c1 = R.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0, 1))
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    return R.finish(rng, img, np.ones((h, w), np.float32), 2.0)


class OpenWorldPoolGenerator:
    """Assigns sub-domains to pool indices by ``mix`` and renders each image.

    The sub-domain of index ``i`` and its image depend only on (seed, i), so a pool
    is identical however it is generated (order, chunks, processes).
    """

    def __init__(self, size=96, mix=None):
        self.size = size
        self.mix = dict(DEFAULT_MIX if mix is None else mix)
        unknown = set(self.mix) - set(SUBDOMAINS)
        if unknown:
            raise ValueError(f'unknown pool sub-domains {sorted(unknown)}; '
                             f'choose from {SUBDOMAINS}')
        total = sum(self.mix.values())
        if total <= 0:
            raise ValueError('pool mix weights must sum to a positive number')
        self._names = list(self.mix)
        self._cum = np.cumsum([self.mix[k] / total for k in self._names])

    def subdomain(self, seed, index):
        u = np.random.default_rng([seed, 2, index]).random()
        k = int(np.searchsorted(self._cum, u, side='right'))
        return self._names[min(k, len(self._names) - 1)]

    def __call__(self, seed, index):
        """Returns (uint8 image, sub-domain name) for pool image ``index``."""
        name = self.subdomain(seed, index)
        rng = np.random.default_rng([seed, 3, index])
        if name == 'near_rooms':
            style = shifted_room_style(rng, rng.uniform(0.0, 1.0))
            img, _ = RoomSceneGenerator(self.size, style)(rng)
        elif name == 'streets':
            img = street(rng, self.size)
        elif name == 'objects':
            img = object_centric(rng, self.size)
        else:
            img = texture(rng, self.size)
        return img, name
