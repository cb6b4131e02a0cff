"""The synthetic original domain: indoor rooms seen in perspective (an NYUv2 analogue).

A scene is a back wall framed by two side walls, a ceiling trapezoid above and a
floor trapezoid below; windows and pictures hang on the back wall, furniture
stands on the floor and small objects sit on furniture or on the floor. Every
class has its own colour distribution and texture (wood floors, plain walls,
bright windows), and a point light plus ambient level shade the whole scene, so
layouts are spatially coherent and the teacher's BN statistics describe a real
distribution. The same generator, with a shifted :class:`RoomStyle`, renders the
pool's near-domain sub-domain.
"""
from dataclasses import dataclass

import numpy as np

from . import render as R

CLASSES = ('wall', 'floor', 'ceiling', 'window', 'furniture', 'object', 'picture')
PALETTE = [[200, 190, 160], [130, 80, 40], [240, 240, 235], [120, 190, 240],
           [90, 50, 30], [220, 40, 60], [60, 160, 90]]
WALL, FLOOR, CEILING, WINDOW, FURNITURE, OBJECT, PICTURE = range(7)


@dataclass(frozen=True)
class RoomStyle:
    """Colour and lighting statistics of a room; the default is the original domain."""
    wall_sat: tuple = (0.05, 0.25)
    wall_val: tuple = (0.70, 0.92)
    wall_hue: tuple = (0.08, 0.16)
    floor_hue: tuple = (0.05, 0.10)
    floor_sat: tuple = (0.45, 0.75)
    floor_val: tuple = (0.35, 0.60)
    furniture_val: tuple = (0.20, 0.45)
    ambient: tuple = (0.85, 1.15)
    falloff: tuple = (0.2, 0.6)
    tint: tuple = (1.0, 1.0, 1.0)
    noise_std: float = 4.0


class RoomSceneGenerator:
    """Renders (image, label) pairs of rooms; deterministic given a numpy Generator."""

    classes = CLASSES
    palette = PALETTE

    def __init__(self, size=96, style: RoomStyle = RoomStyle()):
        self.size = size
        self.style = style

    def __call__(self, rng: np.random.Generator):
        s, st = self.size, self.style
        h = w = s
        img = np.zeros((h, w, 3), np.float32)
        lab = np.full((h, w), WALL, np.uint8)

        def paint(mask, cls, color, texture=None, strength=0.0):
            R.fill(img, mask, color, texture, strength)
            lab[mask] = cls

        # Room shell: back wall [l, r] x [c, f]; ceiling above, floor below.
        l, r = rng.uniform(0.15, 0.35) * w, rng.uniform(0.65, 0.85) * w
        c, f = rng.uniform(0.15, 0.30) * h, rng.uniform(0.58, 0.72) * h
        wall_color = R.hsv_to_rgb(rng.uniform(*st.wall_hue), rng.uniform(*st.wall_sat),
                                  rng.uniform(*st.wall_val))
        paint(np.ones((h, w), bool), WALL, wall_color, R.smooth_noise(rng, h, w, 16), 0.15)
        side = rng.uniform(0.8, 0.95)  # side walls a little darker than the back wall
        left = R.polygon_mask(h, w, [(0, 0), (l, c), (l, f), (0, h)])
        right = R.polygon_mask(h, w, [(r, c), (w, 0), (w, h), (r, f)])
        img[left | right] *= side
        ceiling = R.polygon_mask(h, w, [(0, 0), (w, 0), (r, c), (l, c)])
        paint(ceiling, CEILING, R.hsv_to_rgb(0.1, rng.uniform(0, 0.06), rng.uniform(0.88, 0.98)))
        floor = R.polygon_mask(h, w, [(l, f), (r, f), (w, h), (0, h)])
        floor_color = R.hsv_to_rgb(rng.uniform(*st.floor_hue), rng.uniform(*st.floor_sat),
                                   rng.uniform(*st.floor_val))
        if rng.random() < 0.6:  # wooden planks
            tex = R.stripes(h, w, rng.uniform(4, 9), np.pi / 2 + rng.uniform(-0.2, 0.2))
            tex = 0.6 * tex + 0.4 * R.smooth_noise(rng, h, w, 6)
        else:  # tiles
            tex = R.checker(h, w, int(rng.integers(6, 12)))
        paint(floor, FLOOR, floor_color, tex, 0.35)

        # Windows and pictures on the back wall.
        for _ in range(int(rng.integers(0, 3))):
            ww, wh = rng.uniform(0.12, 0.22) * w, rng.uniform(0.15, 0.28) * h
            x0, y0 = rng.uniform(l, max(l + 1, r - ww)), rng.uniform(c + 2, max(c + 3, f - wh - 4))
            m = R.rect_mask(h, w, x0, y0, x0 + ww, y0 + wh)
            sky = R.hsv_to_rgb(rng.uniform(0.55, 0.62), rng.uniform(0.25, 0.55), rng.uniform(0.85, 1.0))
            paint(m, WINDOW, sky, R.smooth_noise(rng, h, w, 10), 0.3)
            mull = m & (np.abs(R.grid(h, w)[1] - (x0 + ww / 2)) < 0.8)
            paint(mull, WINDOW, wall_color * 0.9)
        for _ in range(int(rng.integers(0, 3))):
            pw, ph = rng.uniform(0.08, 0.16) * w, rng.uniform(0.08, 0.14) * h
            x0, y0 = rng.uniform(l, max(l + 1, r - pw)), rng.uniform(c + 2, max(c + 3, f - ph - 4))
            frame = R.rect_mask(h, w, x0, y0, x0 + pw, y0 + ph)
            inner = R.rect_mask(h, w, x0 + 1.5, y0 + 1.5, x0 + pw - 1.5, y0 + ph - 1.5)
            paint(frame, PICTURE, np.array([40.0, 30, 20]))
            art = R.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.4, 0.9), rng.uniform(0.5, 0.9))
            paint(inner, PICTURE, art, R.smooth_noise(rng, h, w, 3), 0.9)

        # Furniture standing on the floor, objects on top or on the floor.
        tops = []
        for _ in range(int(rng.integers(1, 4))):
            fw, fh = rng.uniform(0.18, 0.38) * w, rng.uniform(0.12, 0.30) * h
            base = rng.uniform(f + 4, h - 2)
            x0 = rng.uniform(-0.05 * w, w - fw * 0.8)
            col = R.hsv_to_rgb(rng.uniform(0.03, 0.10), rng.uniform(0.3, 0.7), rng.uniform(*st.furniture_val))
            grain = R.stripes(h, w, rng.uniform(3, 6), rng.uniform(-0.1, 0.1))
            if rng.random() < 0.5:  # table: slab on two legs
                slab = R.rect_mask(h, w, x0, base - fh, x0 + fw, base - fh + max(2.5, fh * 0.18))
                legs = (R.rect_mask(h, w, x0 + 1, base - fh, x0 + 3.5, base)
                        | R.rect_mask(h, w, x0 + fw - 3.5, base - fh, x0 + fw - 1, base))
                paint(slab | legs, FURNITURE, col, grain, 0.25)
            else:  # cabinet
                body = R.rect_mask(h, w, x0, base - fh, x0 + fw, base)
                paint(body, FURNITURE, col, grain, 0.25)
                seam = body & (np.abs(R.grid(h, w)[1] - (x0 + fw / 2)) < 0.6)
                img[seam] *= 0.6
            tops.append((x0, fw, base - fh))
        for _ in range(int(rng.integers(1, 5))):
            if tops and rng.random() < 0.7:
                x0, fw, y = tops[int(rng.integers(len(tops)))]
                cx = rng.uniform(x0 + 2, x0 + fw - 2)
            else:
                cx, y = rng.uniform(0, w), rng.uniform(f + 6, h)
            rad = rng.uniform(0.03, 0.07) * s
            col = R.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
            if rng.random() < 0.5:
                m = R.ellipse_mask(h, w, cx, y - rad, rad, rad)
            else:
                m = R.rect_mask(h, w, cx - rad, y - 2 * rad, cx + rad, y)
            paint(m, OBJECT, col, R.smooth_noise(rng, h, w, 2), 0.3)

        light = R.lighting(rng, h, w, rng.uniform(*st.ambient), rng.uniform(*st.falloff))
        img *= np.asarray(st.tint, np.float32)[None, None]
        return R.finish(rng, img, light, st.noise_std), lab
