"""Street furniture: poles carrying traffic lights, signs or a lamp's head, and the clutter
Cityscapes ignores (bins and bollards are `static`, carts and strollers `dynamic`).

Every drawer consumes the scene's random generator in a fixed order, which is what makes a
(seed, index, size) give the same pixels; reordering two draws changes every scene.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ocrnet.data.synthetic.geometry import Camera, Canvas, draw_box, jitter, shade
from ocrnet.data.synthetic.labels import LIGHT, POLE, SIGN, STATIC


def draw_static(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float,
                label_id: int) -> None:
    """Ignore-class clutter: bins and bollards ('static'), carts and strollers ('dynamic')."""
    wdt, hgt = (rng.uniform(0.5, 0.8), rng.uniform(0.8, 1.2)) if label_id == STATIC else (
        rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
    rgb = jitter(rng, (60, 90, 60) if label_id == STATIC else (120, 60, 100), 25)
    draw_box(cv, cam, (x - wdt / 2, x + wdt / 2, 0, hgt, z, z + wdt), label_id, rgb)


# --- poles, lights and signs -----------------------------------------------------------------
def draw_pole(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float) -> None:
    """A pole at the curb carrying a traffic light, a sign, both, or a street lamp's head."""
    unit = cv.label.shape[0] / 256  # minimum sizes are specified at 256 px height
    height = rng.uniform(4.5, 8.0)
    bx, by = cam.project(x, 0, z)
    _, ty = cam.project(x, height, z)
    pw = max(4 * unit, cam.px(0.2, z))
    grey = jitter(rng, (120, 122, 125), 20)
    cv.fill(np.array([(bx - pw / 2, by), (bx + pw / 2, by), (bx + pw / 2, ty), (bx - pw / 2, ty)]),
            POLE, grey)
    cv.paint(np.array([(bx - pw / 2, by), (bx - pw / 6, by), (bx - pw / 6, ty), (bx - pw / 2, ty)]),
             shade(grey, 1.25))
    toward = 1 if x < 0 else -1  # arms reach out over the road
    kind = rng.choice(4, p=[0.3, 0.35, 0.27, 0.08])  # light, sign, both, plain lamp post
    if kind in (0, 2):
        _draw_traffic_light(cv, cam, rng, x, z, height, toward, grey)
    if kind in (1, 2):
        sy = rng.uniform(2.0, 3.2) if kind == 1 else rng.uniform(2.0, 2.8)
        cx, cy = cam.project(x + toward * 0.15, sy, z)
        r = max(5 * unit, cam.px(rng.uniform(0.3, 0.45), z))
        _SIGNS[rng.integers(len(_SIGNS))](cv, rng, cx, cy, r)
    if kind == 3:  # a street lamp: the head is part of the pole
        ax1, ay = cam.project(x + toward * 1.5, height, z)
        aw = max(3 * unit, cam.px(0.12, z))
        cv.fill(np.array([(bx, ty), (ax1, ay - aw), (ax1, ay + aw), (bx, ty + aw)]), POLE, grey)


def _draw_traffic_light(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float,
                        height: float, toward: int, grey: np.ndarray) -> None:
    """A light either on an arm over the road or on the pole itself; one lamp lit."""
    unit = cv.label.shape[0] / 256
    lx = x + toward * rng.uniform(1.5, 4.0) if rng.random() < 0.5 else x
    ly = height - rng.uniform(0.3, 1.0)
    if lx != x:
        ax0, ay = cam.project(x, ly + 0.5, z)
        ax1, _ = cam.project(lx, ly + 0.5, z)
        aw = max(3 * unit, cam.px(0.12, z))
        cv.fill(np.array([(ax0, ay - aw / 2), (ax1, ay - aw / 2), (ax1, ay + aw / 2),
                          (ax0, ay + aw / 2)]), POLE, grey)
    cx, cy = cam.project(lx, ly, z)
    bw = max(8 * unit, cam.px(0.35, z))
    bh = max(20 * unit, cam.px(1.0, z)) if rng.random() < 0.8 else max(9 * unit, bw)
    housing = jitter(rng, (35, 35, 30) if rng.random() < 0.7 else (190, 160, 40), 10)
    cv.fill(np.array([(cx - bw / 2, cy - bh / 2), (cx + bw / 2, cy - bh / 2),
                      (cx + bw / 2, cy + bh / 2), (cx - bw / 2, cy + bh / 2)]), LIGHT, housing)
    n = 3 if bh > 1.8 * bw else 1
    lit = rng.integers(n)
    for i in range(n):
        lamp = ((230, 40, 30), (240, 180, 30), (40, 220, 90))[(i + (0 if n == 3 else 2)) % 3]
        col = lamp if i == lit else shade(lamp, 0.3)
        cv.disc((cx, cy - bh / 2 + bh * (i + 0.5) / n), min(bw, bh / n) * 0.33, None, col)


def _prohibitory(cv: Canvas, rng: np.random.Generator, cx: float, cy: float, r: float) -> None:
    """Red ring, white disc."""
    cv.disc((cx, cy), r, SIGN, jitter(rng, (200, 30, 35), 10))
    cv.disc((cx, cy), r * 0.72, None, jitter(rng, (235, 235, 235), 10))


def _mandatory(cv: Canvas, rng: np.random.Generator, cx: float, cy: float, r: float) -> None:
    """Blue disc with a white arrow."""
    cv.disc((cx, cy), r, SIGN, jitter(rng, (30, 70, 170), 10))
    cv.paint(np.array([(cx - r * 0.15, cy + r * 0.6), (cx + r * 0.15, cy + r * 0.6),
                       (cx + r * 0.15, cy - r * 0.1), (cx + r * 0.45, cy - r * 0.1),
                       (cx, cy - r * 0.65), (cx - r * 0.45, cy - r * 0.1),
                       (cx - r * 0.15, cy - r * 0.1)]), (235, 235, 235))


def _priority(cv: Canvas, rng: np.random.Generator, cx: float, cy: float, r: float) -> None:
    """Priority road: yellow diamond, white border."""
    d = np.array([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)])
    cv.fill(d, SIGN, (235, 235, 230))
    cv.paint((d - (cx, cy)) * 0.7 + (cx, cy), jitter(rng, (240, 190, 20), 10))


def _warning(cv: Canvas, rng: np.random.Generator, cx: float, cy: float, r: float) -> None:
    """White triangle, red border."""
    t = np.array([(cx, cy - r), (cx + r, cy + r * 0.75), (cx - r, cy + r * 0.75)])
    cv.fill(t, SIGN, jitter(rng, (200, 30, 35), 10))
    cv.paint((t - (cx, cy + r * 0.15)) * 0.6 + (cx, cy + r * 0.15), (235, 235, 230))


def _information(cv: Canvas, rng: np.random.Generator, cx: float, cy: float, r: float) -> None:
    """Blue rectangle with a white panel."""
    rect = np.array([(cx - r, cy - r * 0.8), (cx + r, cy - r * 0.8),
                     (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)])
    cv.fill(rect, SIGN, jitter(rng, (30, 80, 160), 10))
    cv.paint(np.array([(cx - r * 0.5, cy - r * 0.4), (cx + r * 0.5, cy - r * 0.4),
                       (cx + r * 0.5, cy + r * 0.4), (cx - r * 0.5, cy + r * 0.4)]),
             (230, 230, 230))


# Sign styles, drawn with equal odds; a sign of radius r centred at (cx, cy) px.
_SIGNS: tuple[Callable[[Canvas, np.random.Generator, float, float, float], None], ...] = (
    _prohibitory, _mandatory, _priority, _warning, _information)
