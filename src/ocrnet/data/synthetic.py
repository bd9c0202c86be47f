"""Synthetic street scenes written in the exact Cityscapes layout.

Each scene is built in world coordinates (metres) and projected with a pinhole camera, so geometry
is consistent: the road is a trapezoid converging on the vanishing point, objects shrink with
depth, and everything is painted far to near so nearer objects occlude farther ones.

The label map is the primary output: every shape is filled with the same integer polygon into the
label map (Cityscapes label ids, no anti-aliasing) and into a colour canvas. Details that do not
change the class (windows, wheels, lane markings) touch only the colour canvas. The picture is then
rendered from the canvas with per-class textures, lighting, blur, noise and JPEG artefacts, so
labels and pixels agree exactly.

Every image draws from its own generator, `np.random.default_rng([seed, split_id, index])`, so a
dataset can be written in parallel, in any order, and the same (seed, index, size) always gives
byte-identical files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocrnet.data.cityscapes import CLASSES, IGNORE_INDEX, LABEL_TO_TRAIN, TRAIN_TO_LABEL
from ocrnet.errors import DataError

GENERATOR_VERSION = 1

#: Cities per split; images are spread over them in contiguous blocks like the real dataset.
CITIES: dict[str, tuple[str, ...]] = {
    "train": ("synthA", "synthB", "synthC"),
    "val": ("synthD", "synthE"),
}
_SPLIT_IDS = {"train": 0, "val": 1}

# Official label id of each train class, looked up by name from the shared table.
_ID = {name: int(TRAIN_TO_LABEL[i]) for i, name in enumerate(CLASSES)}
ROAD, SIDEWALK, BUILDING, WALL, FENCE = (_ID[n] for n in
                                         ("road", "sidewalk", "building", "wall", "fence"))
POLE, LIGHT, SIGN, VEG, TERRAIN, SKY = (_ID[n] for n in ("pole", "traffic light", "traffic sign",
                                                         "vegetation", "terrain", "sky"))
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN = (_ID[n] for n in ("person", "rider", "car", "truck",
                                                          "bus", "train"))
MOTORCYCLE, BICYCLE = _ID["motorcycle"], _ID["bicycle"]
# Official Cityscapes ids whose trainId is 255: the evaluation must ignore them.
UNLABELED, EGO_VEHICLE, STATIC, DYNAMIC, GUARD_RAIL = 0, 1, 4, 5, 14

# Per-label-id texture amplitudes (luminance, in 0..255 units): fine grain, mid-scale blotches
# (leaves), large-scale stains. Distinct texture statistics per class keep classes identifiable
# from local appearance, which a CNN trained for an hour on CPU needs.
_AMP = np.zeros((256, 3), np.float32)
for _lid, _amp in {
    ROAD: (5, 3, 10), SIDEWALK: (7, 2, 6), BUILDING: (5, 2, 8), WALL: (9, 3, 6),
    FENCE: (6, 2, 3), POLE: (3, 0, 3), LIGHT: (3, 0, 0), SIGN: (2, 0, 0), VEG: (12, 26, 10),
    TERRAIN: (14, 8, 12), SKY: (1, 0, 2), PERSON: (4, 2, 0), RIDER: (4, 2, 0), CAR: (3, 0, 4),
    TRUCK: (4, 0, 4), BUS: (3, 0, 3), TRAIN: (3, 0, 3), MOTORCYCLE: (4, 1, 0),
    BICYCLE: (4, 1, 0), STATIC: (6, 2, 4), DYNAMIC: (6, 2, 4), GUARD_RAIL: (3, 0, 2),
    EGO_VEHICLE: (2, 0, 6), UNLABELED: (2, 0, 0),
}.items():
    _AMP[_lid] = _amp
_GROUND = np.zeros(256, bool)
_GROUND[[ROAD, SIDEWALK, TERRAIN]] = True


# --- camera and canvas -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Camera:
    """Pinhole camera looking down the road: x right, y up (metres above ground), z forward."""

    f: float  # focal length, px
    hc: float  # camera height above the road, m
    vx: float  # vanishing point column, px
    yh: float  # horizon row, px

    def project(self, x: float, y: float, z: float) -> tuple[float, float]:
        return self.vx + self.f * x / z, self.yh + self.f * (self.hc - y) / z

    def quad(self, pts3: Sequence[tuple[float, float, float]]) -> np.ndarray:
        return np.array([self.project(*p) for p in pts3], np.float64)

    def px(self, metres: float, z: float) -> float:
        return self.f * metres / z


class _Canvas:
    """A label map (official label ids) and a float RGB canvas painted with the same polygons."""

    def __init__(self, height: int, width: int) -> None:
        self.label = np.zeros((height, width), np.uint8)
        self.color = np.zeros((height, width, 3), np.float32)

    def fill(self, pts: np.ndarray, label_id: int, rgb: Sequence[float]) -> None:
        # The same rounded int32 polygon goes to both images, so coverage is pixel-identical.
        poly = [np.round(np.asarray(pts)).astype(np.int32).reshape(-1, 1, 2)]
        cv2.fillPoly(self.label, poly, int(label_id))
        cv2.fillPoly(self.color, poly, tuple(float(c) for c in rgb))

    def paint(self, pts: np.ndarray, rgb: Sequence[float]) -> None:
        """Colour only (a detail inside an object of one class: windows, wheels, markings)."""
        poly = [np.round(np.asarray(pts)).astype(np.int32).reshape(-1, 1, 2)]
        cv2.fillPoly(self.color, poly, tuple(float(c) for c in rgb))

    def paint_many(self, quads: np.ndarray, rgb: Sequence[float]) -> None:
        """Colour-only fill of many polygons (N, K, 2) in one call."""
        if len(quads):
            polys = list(np.round(quads).astype(np.int32))
            cv2.fillPoly(self.color, polys, tuple(float(c) for c in rgb))

    def disc(self, center: tuple[float, float], radius: float, label_id: int | None,
             rgb: Sequence[float]) -> None:
        c, r = (round(center[0]), round(center[1])), max(1, round(radius))
        if label_id is not None:
            cv2.circle(self.label, c, r, int(label_id), -1)
        cv2.circle(self.color, c, r, tuple(float(v) for v in rgb), -1)

    def ellipse(self, center: tuple[float, float], axes: tuple[float, float], label_id: int,
                rgb: Sequence[float]) -> None:
        c = (round(center[0]), round(center[1]))
        a = (max(1, round(axes[0])), max(1, round(axes[1])))
        cv2.ellipse(self.label, c, a, 0, 0, 360, int(label_id), -1)
        cv2.ellipse(self.color, c, a, 0, 0, 360, tuple(float(v) for v in rgb), -1)


def _jitter(rng: np.random.Generator, rgb: Sequence[float], amount: float = 12) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _shade(rgb: Sequence[float], k: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) * k, 0, 255)


# --- scene layout ----------------------------------------------------------------------------
@dataclass
class _Street:
    road_l: float  # road edges, m (x)
    road_r: float
    lanes: list[float]  # lane centres, m
    walk_l: float  # outer sidewalk edges
    walk_r: float
    face_l: float  # building facade planes
    face_r: float
    z_far: float


def _ground_quad(cam: _Camera, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    return cam.quad([(x0, 0, z0), (x1, 0, z0), (x1, 0, z1), (x0, 0, z1)])


def _box_faces(cam: _Camera, x0: float, x1: float, y0: float, y1: float, z0: float,
               z1: float) -> dict[str, Any]:
    """Silhouette (convex hull) of an axis-aligned box plus the faces the camera sees."""
    corners = [(x, y, z) for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)]
    hull = cv2.convexHull(cam.quad(corners).astype(np.float32)).reshape(-1, 2)
    faces: dict[str, Any] = {"hull": hull}
    faces["rear"] = lambda u0, u1, v0, v1: cam.quad([
        (x0 + u * (x1 - x0), y0 + v * (y1 - y0), z0)
        for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))])
    side_x = x0 if x0 > 0 else (x1 if x1 < 0 else None)
    if side_x is not None:
        faces["side"] = lambda u0, u1, v0, v1: cam.quad([
            (side_x, y0 + v0 * (y1 - y0), z0 + u0 * (z1 - z0)),
            (side_x, y0 + v0 * (y1 - y0), z0 + u1 * (z1 - z0)),
            (side_x, y0 + v1 * (y1 - y0), z0 + u1 * (z1 - z0)),
            (side_x, y0 + v1 * (y1 - y0), z0 + u0 * (z1 - z0))])
    if y1 < cam.hc:
        faces["top"] = cam.quad([(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)])
    return faces


def _draw_box(cv: _Canvas, cam: _Camera, box: tuple[float, ...], label_id: int,
              rgb: np.ndarray) -> dict[str, Any]:
    faces = _box_faces(cam, *box)
    cv.fill(faces["hull"], label_id, rgb)
    if "side" in faces:
        cv.paint(faces["side"](0, 1, 0, 1), _shade(rgb, 0.78))
    if "top" in faces:
        cv.paint(faces["top"], _shade(rgb, 1.12))
    cv.paint(faces["rear"](0, 1, 0, 1), rgb)
    return faces


def _sky_and_background(cv: _Canvas, cam: _Camera, st: _Street, rng: np.random.Generator) -> None:
    h = cv.label.shape[0]
    overcast = rng.random() < 0.3
    top = _jitter(rng, (150, 160, 170) if overcast else (70, 120, 190), 15)
    bottom = _jitter(rng, (200, 205, 210) if overcast else (175, 200, 225), 10)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None] ** 0.8
    cv.label[:] = SKY
    cv.color[:] = top * (1 - t) + bottom * t
    # Far buildings and trees along the horizon, hazy (mixed towards the sky colour).
    z = st.z_far
    x = st.face_l - 5
    while x < st.face_r + 5:
        bw = rng.uniform(6, 20)
        if rng.random() < 0.25:
            c = (x + bw / 2, rng.uniform(3, 8))
            cv.ellipse(cam.project(c[0], c[1], z), (cam.px(bw / 2, z), cam.px(c[1] * 0.7, z)),
                       VEG, _shade(_jitter(rng, (90, 120, 70)), 0.85) * 0.7 + bottom * 0.3)
        else:
            bh = rng.uniform(6, 35)
            col = _jitter(rng, _FACADES[rng.integers(len(_FACADES))], 15) * 0.65 + bottom * 0.35
            cv.fill(cam.quad([(x, -1, z), (x + bw, -1, z), (x + bw, bh, z), (x, bh, z)]),
                    BUILDING, col)
        x += bw


_FACADES = ((190, 170, 140), (150, 150, 150), (160, 90, 70), (215, 205, 185), (100, 100, 105),
            (180, 185, 160), (200, 160, 120), (120, 110, 100))
_CAR_COLORS = ((170, 172, 178), (30, 32, 38), (25, 40, 90), (150, 20, 25), (215, 215, 210),
               (30, 70, 40), (90, 95, 100), (60, 90, 150))


def _draw_ground(cv: _Canvas, cam: _Camera, st: _Street, rng: np.random.Generator,
                 tram_x: float | None) -> None:
    z0, z1 = 1.0, st.z_far
    far = 400.0
    # Whatever lies beyond the sidewalks (grass strip or paved ground) up to the facades.
    for side in (-1, 1):
        outer, face = (st.walk_l, st.face_l) if side < 0 else (st.walk_r, st.face_r)
        cv.fill(_ground_quad(cam, outer, side * far, z0, z1), TERRAIN,
                _jitter(rng, (95, 125, 55), 18))
        if rng.random() < 0.35:  # packed soil instead of grass in places
            za = rng.uniform(6, 30)
            cv.fill(_ground_quad(cam, outer, face, za, za + rng.uniform(5, 20)), TERRAIN,
                    _jitter(rng, (135, 115, 80), 12))
    road_rgb = _jitter(rng, (82, 82, 86), 10)
    cv.fill(_ground_quad(cam, st.road_l, st.road_r, z0, z1), ROAD, road_rgb)
    walk_rgb = _jitter(rng, (165, 150, 150), 15)
    for a, b in ((st.walk_l, st.road_l), (st.road_r, st.walk_r)):
        cv.fill(_ground_quad(cam, a, b, z0, z1), SIDEWALK, walk_rgb)
        # Paving joints, projected so they converge like the real thing.
        z = np.cumsum(np.full(80, 0.6)) * np.linspace(1, 3, 80) + z0
        z = z[z < 60]
        zz1 = z + 0.05 + 0.002 * z
        quads = np.stack([np.stack(cam.project(xv, 0.0, zv), -1)
                          for xv, zv in ((a, z), (b, z), (b, zz1), (a, zz1))], 1)
        cv.paint_many(quads, _shade(walk_rgb, 0.8))
    grass = _jitter(rng, (100, 135, 60), 15)
    for outer, side in ((st.walk_l, -1), (st.walk_r, 1)):
        if rng.random() < 0.6:  # a grass verge along the sidewalk's outer edge, in stretches
            wv = rng.uniform(0.8, 2.0)
            z = rng.uniform(3, 12)
            while z < 80:
                seg = rng.uniform(8, 30)
                cv.fill(_ground_quad(cam, outer, outer - side * wv, z, z + seg), TERRAIN, grass)
                z += seg + rng.uniform(2, 12)
    for edge, out in ((st.road_l, -0.2), (st.road_r, 0.2)):  # curb: a lighter band, sidewalk
        q = cam.quad([(edge, 0, z0), (edge, 0.15, z0), (edge, 0.15, z1), (edge, 0, z1)])
        cv.fill(q, SIDEWALK, _shade(walk_rgb, 1.15))
        cv.paint(_ground_quad(cam, edge + out, edge, z0, z1), _shade(walk_rgb, 1.08))
    # Lane markings (still road): dashed between lanes, solid at the edges, sometimes a zebra.
    white = _jitter(rng, (215, 215, 210), 15)
    lane_w = st.lanes[1] - st.lanes[0] if len(st.lanes) > 1 else 3.2
    for xb in st.lanes[:-1]:
        xm = xb + lane_w / 2
        z = z0 + rng.uniform(0, 9)
        while z < z1:
            cv.paint(_ground_quad(cam, xm - 0.08, xm + 0.08, z, z + 3), white)
            z += 9
    for xe in (st.road_l + 0.3, st.road_r - 0.3):
        cv.paint(_ground_quad(cam, xe - 0.07, xe + 0.07, z0, z1), white)
    if rng.random() < 0.35:
        zc = rng.uniform(8, 25)
        x = st.road_l + 0.5
        while x < st.road_r - 0.5:
            cv.paint(_ground_quad(cam, x, x + 0.5, zc, zc + 3), white)
            x += 1.0
    if tram_x is not None:  # tram rails are part of the road in Cityscapes
        for xr in (tram_x - 0.72, tram_x + 0.72):
            cv.paint(_ground_quad(cam, xr - 0.05, xr + 0.05, z0, z1), (150, 150, 155))


def _draw_facades(cv: _Canvas, cam: _Camera, st: _Street, rng: np.random.Generator,
                  side: int) -> None:
    """Buildings (or a park: trees) along one side of the street, far to near."""
    face = st.face_l if side < 0 else st.face_r
    if rng.random() < 0.15:  # a park side: a row of big trees instead of facades
        for z in np.arange(st.z_far, 5, -rng.uniform(6, 12)):
            _draw_tree(cv, cam, rng, face + side * rng.uniform(0, 4), float(z), big=True)
        return
    zs = [st.z_far]
    while zs[-1] > 3:
        zs.append(zs[-1] - rng.uniform(8, 30))
    for za, zb in zip(zs[1:], zs[:-1], strict=False):
        za = max(za, 1.5)
        bh = rng.uniform(8, 28)
        if rng.random() < 0.1:  # a gap between buildings shows the sky
            continue
        rgb = _jitter(rng, _FACADES[rng.integers(len(_FACADES))], 15)
        q = cam.quad([(face, 0, za), (face, 0, zb), (face, bh, zb), (face, bh, za)])
        cv.fill(q, BUILDING, _shade(rgb, 0.9))
        # Windows: a grid of floors and bays, only where they are at least a pixel big. Drawn
        # in a few batches (one fillPoly each) because hundreds of small calls are slow.
        if cam.px(1.2, zb) < 1.5:
            continue
        floor_h, bay = rng.uniform(2.8, 3.4), rng.uniform(2.2, 3.5)
        ys = np.arange(rng.uniform(0.6, 1.5) + (3 if rng.random() < 0.5 else 0), bh - 1.5, floor_h)
        zs_ = np.arange(za + 0.6, zb - 1.2, bay)
        zs_ = zs_[cam.px(1.0, zs_) >= 1.5]
        if not len(ys) or not len(zs_):
            continue
        y, z = (a.ravel() for a in np.meshgrid(ys, zs_))
        glass = _jitter(rng, (60, 70, 85), 15)
        if rng.random() < 0.5:  # window frames
            cv.paint_many(_facade_quads(cam, face, y - 0.15, y + 1.65, z - 0.15, z + 1.25),
                          _shade(rgb, 1.2))
        quads = _facade_quads(cam, face, y, y + 1.5, z, z + 1.1)
        group = rng.integers(3, size=len(quads))
        for g in range(3):
            cv.paint_many(quads[group == g], _shade(glass, 0.75 + 0.25 * g))


def _facade_quads(cam: _Camera, x: float, y0: np.ndarray, y1: np.ndarray, z0: np.ndarray,
                  z1: np.ndarray) -> np.ndarray:
    """(N, 4, 2) image quads of rectangles on the vertical plane at lateral position x."""
    corners = [(y0, z0), (y0, z1), (y1, z1), (y1, z0)]
    return np.stack([np.stack(cam.project(x, yy, zz), -1) for yy, zz in corners], 1)


def _draw_tree(cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z: float,
               big: bool = False) -> None:
    trunk_h = rng.uniform(2.0, 4.0) * (1.3 if big else 1)
    tw = max(0.25, 4 / cam.f * z)  # the trunk stays a few pixels wide
    cv.fill(cam.quad([(x - tw / 2, 0, z), (x + tw / 2, 0, z), (x + tw / 2, trunk_h + 1, z),
                      (x - tw / 2, trunk_h + 1, z)]), VEG, _jitter(rng, (80, 60, 45), 10))
    leaf = _jitter(rng, (70, 105, 40), 18)
    r = rng.uniform(1.5, 3.0) * (1.5 if big else 1)
    for _ in range(rng.integers(3, 7)):
        cx, cy = x + rng.uniform(-r, r) * 0.6, trunk_h + r + rng.uniform(-r, r) * 0.5
        rr = r * rng.uniform(0.6, 1.0)
        cv.ellipse(cam.project(cx, cy, z), (cam.px(rr, z), cam.px(rr * 0.9, z)), VEG,
                   _shade(leaf, rng.uniform(0.75, 1.2)))


def _draw_long_plane(cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z0: float,
                     z1: float, height: float, label_id: int, rgb: np.ndarray) -> None:
    cv.fill(cam.quad([(x, 0, z0), (x, 0, z1), (x, height, z1), (x, height, z0)]), label_id, rgb)
    # Posts / joints every couple of metres, colour only.
    for z in np.arange(z0, z1, rng.uniform(2, 4)):
        cv.paint(cam.quad([(x, 0, z), (x, 0, z + 0.12), (x, height, z + 0.12), (x, height, z)]),
                 _shade(rgb, 0.7))


# --- objects ---------------------------------------------------------------------------------
def _draw_pole(cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z: float,
               street: _Street) -> None:
    unit = cv.label.shape[0] / 256  # minimum sizes are specified at 256 px height
    height = rng.uniform(4.5, 8.0)
    bx, by = cam.project(x, 0, z)
    _, ty = cam.project(x, height, z)
    pw = max(4 * unit, cam.px(0.2, z))
    grey = _jitter(rng, (120, 122, 125), 20)
    cv.fill(np.array([(bx - pw / 2, by), (bx + pw / 2, by), (bx + pw / 2, ty), (bx - pw / 2, ty)]),
            POLE, grey)
    cv.paint(np.array([(bx - pw / 2, by), (bx - pw / 6, by), (bx - pw / 6, ty), (bx - pw / 2, ty)]),
             _shade(grey, 1.25))
    toward = 1 if x < 0 else -1  # arms reach out over the road
    kind = rng.choice(4, p=[0.3, 0.35, 0.27, 0.08])  # light, sign, both, plain lamp post
    if kind in (0, 2):
        # A light either on an arm over the road or on the pole itself.
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
        housing = _jitter(rng, (35, 35, 30) if rng.random() < 0.7 else (190, 160, 40), 10)
        cv.fill(np.array([(cx - bw / 2, cy - bh / 2), (cx + bw / 2, cy - bh / 2),
                          (cx + bw / 2, cy + bh / 2), (cx - bw / 2, cy + bh / 2)]), LIGHT, housing)
        n = 3 if bh > 1.8 * bw else 1
        lit = rng.integers(n)
        for i in range(n):
            lamp = ((230, 40, 30), (240, 180, 30), (40, 220, 90))[(i + (0 if n == 3 else 2)) % 3]
            col = lamp if i == lit else _shade(lamp, 0.3)
            cv.disc((cx, cy - bh / 2 + bh * (i + 0.5) / n), min(bw, bh / n) * 0.33, None, col)
    if kind in (1, 2):
        sy = rng.uniform(2.0, 3.2) if kind == 1 else rng.uniform(2.0, 2.8)
        cx, cy = cam.project(x + toward * 0.15, sy, z)
        r = max(5 * unit, cam.px(rng.uniform(0.3, 0.45), z))
        style = rng.integers(5)
        if style == 0:  # prohibitory: red ring, white disc
            cv.disc((cx, cy), r, SIGN, _jitter(rng, (200, 30, 35), 10))
            cv.disc((cx, cy), r * 0.72, None, _jitter(rng, (235, 235, 235), 10))
        elif style == 1:  # mandatory: blue disc with a white arrow
            cv.disc((cx, cy), r, SIGN, _jitter(rng, (30, 70, 170), 10))
            cv.paint(np.array([(cx - r * 0.15, cy + r * 0.6), (cx + r * 0.15, cy + r * 0.6),
                               (cx + r * 0.15, cy - r * 0.1), (cx + r * 0.45, cy - r * 0.1),
                               (cx, cy - r * 0.65), (cx - r * 0.45, cy - r * 0.1),
                               (cx - r * 0.15, cy - r * 0.1)]), (235, 235, 235))
        elif style == 2:  # priority road: yellow diamond, white border
            d = np.array([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)])
            cv.fill(d, SIGN, (235, 235, 230))
            cv.paint((d - (cx, cy)) * 0.7 + (cx, cy), _jitter(rng, (240, 190, 20), 10))
        elif style == 3:  # warning: white triangle, red border
            t = np.array([(cx, cy - r), (cx + r, cy + r * 0.75), (cx - r, cy + r * 0.75)])
            cv.fill(t, SIGN, _jitter(rng, (200, 30, 35), 10))
            cv.paint((t - (cx, cy + r * 0.15)) * 0.6 + (cx, cy + r * 0.15), (235, 235, 230))
        else:  # information: blue rectangle with a white panel
            rect = np.array([(cx - r, cy - r * 0.8), (cx + r, cy - r * 0.8),
                             (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)])
            cv.fill(rect, SIGN, _jitter(rng, (30, 80, 160), 10))
            cv.paint(np.array([(cx - r * 0.5, cy - r * 0.4), (cx + r * 0.5, cy - r * 0.4),
                               (cx + r * 0.5, cy + r * 0.4), (cx - r * 0.5, cy + r * 0.4)]),
                     (230, 230, 230))
    if kind == 3:  # a street lamp: the head is part of the pole
        ax1, ay = cam.project(x + toward * 1.5, height, z)
        aw = max(3 * unit, cam.px(0.12, z))
        cv.fill(np.array([(bx, ty), (ax1, ay - aw), (ax1, ay + aw), (bx, ty + aw)]), POLE, grey)


def _person_shape(cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z: float,
                  label_id: int, base_y: float = 0.0, seated: bool = False,
                  facing: int = 1) -> None:
    height = rng.uniform(1.55, 1.9)
    s = cam.f / z
    gx, gy = cam.project(x, base_y, z)
    unit = cv.label.shape[0] / 256
    s = max(s, 14 * unit / height)  # at least ~14 px tall at 256 px height
    skin = _jitter(rng, ((225, 185, 150), (180, 130, 95), (120, 80, 60))[rng.integers(3)], 10)
    if label_id == RIDER:  # riders wear bright jackets and helmets: visibly not pedestrians
        top = _jitter(rng, ((230, 200, 30), (220, 90, 20), (40, 160, 60), (200, 30, 40))[
            rng.integers(4)], 20)
    else:
        top = _jitter(rng, ((40, 50, 80), (150, 40, 40), (220, 220, 215), (50, 50, 50),
                            (180, 150, 110), (70, 110, 160), (110, 70, 110))[rng.integers(7)], 20)
    legs = _jitter(rng, ((30, 35, 60), (40, 40, 40), (120, 110, 95))[rng.integers(3)], 10)
    hw = 0.22 * height * s  # shoulder half width, px
    hip_y = gy - 0.5 * height * s
    neck_y = gy - 0.83 * height * s
    if seated:
        knee = (gx + facing * 0.25 * height * s, hip_y + 0.05 * height * s)
        cv.fill(np.array([(gx - hw * 0.6, hip_y), knee, (knee[0], gy), (knee[0] - facing * hw * 0.5,
                                                                          gy)]), label_id, legs)
        cv.fill(np.array([(gx - hw * 0.6, hip_y - hw * 0.3), (gx + hw * 0.6, hip_y - hw * 0.3),
                          knee, (gx, hip_y + hw * 0.4)]), label_id, legs)
        lean = facing * 0.12 * height * s
    else:
        step = rng.uniform(0.0, 0.18) * height * s
        for sx in (-1, 1):
            cv.fill(np.array([(gx - hw * 0.5 + sx * 0.02, hip_y), (gx + hw * 0.5, hip_y),
                              (gx + sx * step + hw * 0.3, gy), (gx + sx * step - hw * 0.3, gy)]),
                    label_id, _shade(legs, 1.0 if sx < 0 else 0.85))
        lean = 0.0
    torso = np.array([(gx - hw * 0.7, hip_y), (gx + hw * 0.7, hip_y), (gx + lean + hw, neck_y),
                      (gx + lean - hw, neck_y)])
    cv.fill(torso, label_id, top)
    for sx in (-1, 1):  # arms
        ax = gx + lean + sx * hw
        ex = ax + (facing * 0.2 * height * s if seated else sx * 0.05 * height * s)
        cv.fill(np.array([(ax - hw * 0.25, neck_y), (ax + hw * 0.25, neck_y),
                          (ex + hw * 0.2, hip_y), (ex - hw * 0.2, hip_y)]), label_id,
                _shade(top, 0.85))
    head_r = 0.065 * height * s
    hx, hy = gx + lean, neck_y - head_r * 1.1
    cv.disc((hx, hy), head_r, label_id, skin)
    if label_id == RIDER:
        cv.ellipse((hx, hy - head_r * 0.3), (head_r * 1.15, head_r * 0.85), label_id,
                   _jitter(rng, (240, 240, 240) if rng.random() < 0.5 else (30, 30, 35), 10))
    else:
        cv.ellipse((hx, hy - head_r * 0.5), (head_r, head_r * 0.5), label_id,
                   _jitter(rng, (50, 35, 25), 15))


def _draw_two_wheeler(cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z: float,
                      motor: bool, ridden: bool) -> None:
    """A bicycle or motorcycle in side view, with or without its rider."""
    unit = cv.label.shape[0] / 256
    label_id = MOTORCYCLE if motor else BICYCLE
    length, wr = (2.0, 0.32) if motor else (1.7, 0.34)
    s = max(cam.f / z, 10 * unit / (2 * wr))  # wheels at least ~10 px across
    facing = 1 if rng.random() < 0.5 else -1
    gx, gy = cam.project(x, 0, z)
    rpx = wr * s
    back = gx - facing * (length * s / 2 - rpx)
    front = gx + facing * (length * s / 2 - rpx)
    frame = _jitter(rng, ((30, 30, 35), (150, 20, 20), (20, 40, 120), (200, 200, 200))[
        rng.integers(4)], 15)
    for wx in (back, front):  # wheels: a dark tyre disc with a lighter hub
        cv.disc((wx, gy - rpx), rpx, label_id, (25, 25, 25))
        cv.disc((wx, gy - rpx), rpx * (0.35 if motor else 0.75), None,
                (90, 90, 95) if motor else _shade(_jitter(rng, (95, 95, 95), 5), 1.0))
    bar = max(2.0, 0.07 * s)
    if motor:
        body = _jitter(rng, ((30, 30, 30), (170, 20, 20), (20, 60, 150), (210, 150, 20))[
            rng.integers(4)], 15)
        cv.fill(np.array([(back, gy - rpx * 1.2), (front, gy - rpx * 1.5),
                          (front - facing * rpx * 0.4, gy - rpx * 2.6),
                          (back + facing * rpx * 0.5, gy - rpx * 2.4), (back, gy - rpx * 2.0)]),
                label_id, body)
        cv.paint(np.array([(gx - rpx * 0.6, gy - rpx * 0.6), (gx + rpx * 0.6, gy - rpx * 0.6),
                           (gx + rpx * 0.6, gy - rpx * 1.4), (gx - rpx * 0.6, gy - rpx * 1.4)]),
                 (120, 120, 125))
        seat_y = gy - rpx * 2.4
    else:
        seat = (gx - facing * rpx * 0.3, gy - rpx * 2.6)
        bb = (gx, gy - rpx)
        for a, b in (((back, gy - rpx), bb), (bb, seat), ((back, gy - rpx), seat),
                     (seat, (front - facing * rpx * 0.1, gy - rpx * 2.6)),
                     ((front, gy - rpx), (front - facing * rpx * 0.2, gy - rpx * 2.9))):
            d = np.array(b) - np.array(a)
            nrm = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-6) * bar / 2
            cv.fill(np.array([np.array(a) + nrm, np.array(b) + nrm, np.array(b) - nrm,
                              np.array(a) - nrm]), label_id, frame)
        seat_y = seat[1]
    if ridden:
        # The rider's hips sit on the seat: base_y in metres puts the feet near the pedals.
        base = (gy - seat_y) / s - 0.5 * 1.72 + 0.45
        _person_shape(cv, cam, rng, x, z, RIDER, base_y=max(0.1, base), seated=True,
                      facing=facing)


def _draw_vehicle(cv: _Canvas, cam: _Camera, rng: np.random.Generator, kind: int, x: float,
                  z: float) -> float:
    """A car, truck, bus or tram seen from behind/the side; returns its length in metres."""
    if kind == CAR:
        w, h, length = rng.uniform(1.7, 1.9), rng.uniform(1.4, 1.6), rng.uniform(3.9, 4.8)
        rgb = _jitter(rng, _CAR_COLORS[rng.integers(len(_CAR_COLORS))], 12)
        body = (x - w / 2, x + w / 2, 0.12, h * 0.58, z, z + length)
        _draw_box(cv, cam, body, CAR, rgb)
        cab = (x - w / 2 + 0.12, x + w / 2 - 0.12, h * 0.58, h, z + 0.9, z + length - 1.1)
        f = _draw_box(cv, cam, cab, CAR, _shade(rgb, 0.95))
        glass = _jitter(rng, (45, 55, 70), 10)
        f_body = _box_faces(cam, *body)
        cv.paint(f["rear"](0.08, 0.92, 0.1, 0.85), glass)
        if "side" in f:
            cv.paint(f["side"](0.08, 0.92, 0.15, 0.85), _shade(glass, 0.9))
        for u0, u1 in ((0.04, 0.2), (0.8, 0.96)):  # tail lights
            cv.paint(f_body["rear"](u0, u1, 0.6, 0.8), (200, 25, 20))
        cv.paint(f_body["rear"](0.38, 0.62, 0.2, 0.42), (225, 225, 220))  # plate (still car)
        wheel_r = 0.33
    else:
        if kind == TRUCK:
            w, h, length = 2.5, rng.uniform(3.3, 4.0), rng.uniform(7, 10)
            rgb = _jitter(rng, ((200, 195, 185), (200, 120, 40), (140, 120, 95), (90, 110, 70))[
                rng.integers(4)], 12)
            cab_rgb = _jitter(rng, ((30, 60, 130), (170, 30, 30), (220, 220, 220))[
                rng.integers(3)], 12)
            _draw_box(cv, cam, (x - w / 2 + 0.1, x + w / 2 - 0.1, 0.35, 3.0, z + length - 2.2,
                                z + length), TRUCK, cab_rgb)
            f = _draw_box(cv, cam, (x - w / 2, x + w / 2, 0.9, h, z, z + length - 2.3), TRUCK, rgb)
            cv.paint(f["rear"](0.49, 0.51, 0.05, 0.95), _shade(rgb, 0.6))  # door seam
            cv.paint(f["rear"](0.0, 1.0, 0.0, 0.06), (40, 40, 40))  # bumper
            if "side" in f:
                cv.paint(f["side"](0.1, 0.9, 0.55, 0.75), _shade(cab_rgb, 0.9))  # logo band
            # Chassis under the box so the wheels have something to hang on.
            cv.fill(_box_faces(cam, x - w / 2 + 0.2, x + w / 2 - 0.2, 0.3, 0.9, z + 0.3,
                               z + length)["hull"], TRUCK, (35, 35, 38))
            wheel_r = 0.5
        elif kind == BUS:
            w, h, length = 2.55, rng.uniform(3.0, 3.3), rng.uniform(11, 13)
            rgb = _jitter(rng, ((210, 90, 30), (225, 225, 225), (190, 40, 40))[rng.integers(3)], 10)
            f = _draw_box(cv, cam, (x - w / 2, x + w / 2, 0.3, h, z, z + length), BUS, rgb)
            band = _jitter(rng, (35, 45, 55), 8)
            cv.paint(f["rear"](0.05, 0.95, 0.55, 0.9), band)
            if "side" in f:
                cv.paint(f["side"](0.02, 0.98, 0.4, 0.9), band)
                for u in np.arange(0.05, 0.95, 0.09):  # window pillars
                    cv.paint(f["side"](u, u + 0.012, 0.4, 0.9), rgb)
            cv.paint(f["rear"](0.1, 0.3, 0.15, 0.25), (210, 40, 30))
            cv.paint(f["rear"](0.7, 0.9, 0.15, 0.25), (210, 40, 30))
            wheel_r = 0.5
        else:  # TRAIN: a tram, long and segmented, on its rails
            w, h, length = 2.65, rng.uniform(3.4, 3.7), rng.uniform(25, 35)
            rgb = _jitter(rng, ((235, 215, 40), (30, 150, 140), (235, 235, 225))[
                rng.integers(3)], 10)
            skirt = _jitter(rng, (40, 40, 45), 8) if rng.random() < 0.5 else _jitter(
                rng, (200, 40, 40), 10)
            f = _draw_box(cv, cam, (x - w / 2, x + w / 2, 0.25, h, z, z + length), TRAIN, rgb)
            cv.paint(f["rear"](0.0, 1.0, 0.0, 0.25), skirt)
            cv.paint(f["rear"](0.08, 0.92, 0.45, 0.85), (30, 40, 50))  # windscreen
            if "side" in f:
                cv.paint(f["side"](0.0, 1.0, 0.0, 0.25), _shade(skirt, 0.85))
                for u in np.arange(0.02, 0.98, 0.06):
                    cv.paint(f["side"](u, u + 0.045, 0.45, 0.85), (35, 45, 55))
            # Pantograph: a slim frame on the roof just behind the front, part of the train.
            px0, py0 = cam.project(x, h, z + 1.5)
            px1, py1 = cam.project(x, h + 1.0, z + 1.5)
            lw = max(2.0, cam.px(0.08, z))
            half = cam.px(0.6, z + 1.5)
            cv.fill(np.array([(px0 - lw / 2, py0), (px0 + lw / 2, py0), (px1 + lw / 2, py1),
                              (px1 - lw / 2, py1)]), TRAIN, (60, 60, 60))
            cv.fill(np.array([(px1 - half, py1 - lw), (px1 + half, py1 - lw), (px1 + half, py1),
                              (px1 - half, py1)]), TRAIN, (60, 60, 60))
            return length
    # Tyres peeking out below the body at the rear corners.
    tyre = (22, 22, 24)
    for xx in (x - w / 2 + 0.05, x + w / 2 - 0.35):
        q = cam.quad([(xx, 0, z + 0.6), (xx + 0.3, 0, z + 0.6), (xx + 0.3, wheel_r * 1.1, z + 0.6),
                      (xx, wheel_r * 1.1, z + 0.6)])
        cv.fill(q, kind, tyre)
    side_x = x - w / 2 if x - w / 2 > 0 else (x + w / 2 if x + w / 2 < 0 else None)
    if side_x is not None:  # wheels on the visible side
        for zz in (z + 0.9, z + length - 0.9):
            cx, cy = cam.project(side_x, wheel_r, zz)
            r = cam.px(wheel_r, zz)
            cv.ellipse((cx, cy), (r * 0.5, r), kind, tyre)
            cv.ellipse((cx, cy), (r * 0.25, r * 0.5), kind, (130, 130, 135))
    return length


def _draw_static(cv: _Canvas, cam: _Camera, rng: np.random.Generator, x: float, z: float,
                 label_id: int) -> None:
    """Ignore-class clutter: bins and bollards ('static'), carts and strollers ('dynamic')."""
    wdt, hgt = (rng.uniform(0.5, 0.8), rng.uniform(0.8, 1.2)) if label_id == STATIC else (
        rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
    rgb = _jitter(rng, (60, 90, 60) if label_id == STATIC else (120, 60, 100), 25)
    _draw_box(cv, cam, (x - wdt / 2, x + wdt / 2, 0, hgt, z, z + wdt), label_id, rgb)


# --- the scene -------------------------------------------------------------------------------
def _layout(rng: np.random.Generator, height: int, width: int) -> tuple[_Camera, _Street]:
    cam = _Camera(f=width * rng.uniform(0.95, 1.15), hc=rng.uniform(1.3, 1.7),
                  vx=width * rng.uniform(0.4, 0.6), yh=height * rng.uniform(0.38, 0.47))
    n_lanes = int(rng.integers(2, 5))
    lane_w = rng.uniform(3.0, 3.5)
    ego = int(rng.integers(n_lanes))
    road_l = -(ego + rng.uniform(0.3, 0.7)) * lane_w
    road_r = road_l + n_lanes * lane_w
    lanes = [road_l + (i + 0.5) * lane_w for i in range(n_lanes)]
    walk_l, walk_r = road_l - rng.uniform(2.5, 5.0), road_r + rng.uniform(2.5, 5.0)
    face_l = walk_l - (rng.uniform(1.5, 6) if rng.random() < 0.6 else rng.uniform(0, 0.5))
    face_r = walk_r + (rng.uniform(1.5, 6) if rng.random() < 0.6 else rng.uniform(0, 0.5))
    st = _Street(road_l, road_r, lanes, walk_l, walk_r, face_l, face_r, rng.uniform(120, 200))
    return cam, st


def _z_in_view(rng: np.random.Generator, cam: _Camera, x: float, z_min: float, z_max: float,
               width: int) -> float:
    """A depth in [z_min, z_max] at which lateral position x still projects inside the frame."""
    room = (cam.vx - 0.08 * width) if x < 0 else (0.92 * width - cam.vx)
    z_min = max(z_min, cam.f * abs(x) / max(room, 1.0))
    return float(rng.uniform(z_min, max(z_min, z_max) + 1))


_LENGTH = {CAR: 4.8, TRUCK: 10.0, BUS: 13.0, TRAIN: 35.0}  # longest of each kind, m


def _free_view(cam: _Camera, x: float, half: float, z: float,
               vehicles: list[tuple[float, int, float]]) -> bool:
    """True when no nearer vehicle covers the columns of an object at (x +- half, z)."""
    a, b = cam.f * (x - half) / z, cam.f * (x + half) / z
    for zv, kind, xv in vehicles:
        # A box's columns span its near face and, towards the vanishing point, its far face.
        ends = [cam.f * (xv + dx) / zz for dx in (-1.4, 1.4) for zz in (zv, zv + _LENGTH[kind])]
        if zv < z and min(ends) < b and max(ends) > a:
            return False
    return True


def _place_vehicles(rng: np.random.Generator, cam: _Camera, st: _Street,
                    keep_clear: list[tuple[float, float, float]],
                    ) -> list[tuple[float, int, float]]:
    """(z, kind, x) for vehicles, kept apart per lane so they do not interpenetrate, and never
    in front of the small objects in `keep_clear` ((x, half width, z): the two-wheelers), which
    are the rare classes and would otherwise often be hidden."""
    want: list[int] = []
    if rng.random() < 0.6:
        want.append(TRAIN)
    if rng.random() < 0.65:
        want.append(BUS)
    if rng.random() < 0.7:
        want.append(TRUCK)
    want += [CAR] * int(rng.integers(2, 8))
    taken: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(st.lanes))}
    out = []
    for kind in want:
        length = _LENGTH[kind] + 1
        zmin = 7.0 if kind == CAR else 10.0
        for _ in range(8):
            lane = int(rng.integers(len(st.lanes)))
            z = rng.uniform(zmin, 45 if kind == CAR else 35)
            x = st.lanes[lane] + rng.uniform(-0.3, 0.3)
            if all(z + length + 1 < a or z > b + 1 for a, b in taken[lane]) and all(
                    _free_view(cam, *c, [(z, kind, x)]) for c in keep_clear):
                taken[lane].append((z, z + length))
                out.append((z, kind, x))
                break
    return out


def generate_scene(rng_or_seed: np.random.Generator | int | Sequence[int], height: int,
                   width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one street scene.

    Args:
        rng_or_seed: a numpy Generator, or a seed (int or sequence of ints) for one.
        height, width: image size in pixels (sizes are tuned for 256x512; any size >= 32x32).

    Returns:
        (image, label_ids): an RGB uint8 image (H, W, 3) and the official Cityscapes label ids
        (H, W) uint8; map them to train ids with `ocrnet.data.cityscapes.LABEL_TO_TRAIN`.
    """
    if height < 32 or width < 32:
        raise DataError(f"synthetic scenes need at least 32x32 pixels, got {height}x{width}")
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else (
        np.random.default_rng(rng_or_seed))
    cam, st = _layout(rng, height, width)
    cv = _Canvas(height, width)
    # Two-wheelers first, near the curb (or parked on the sidewalk); vehicles then keep clear.
    bikes = []
    for motor, p in ((True, 0.85), (False, 0.85)):
        if rng.random() < p:
            side = -1 if rng.random() < 0.5 else 1
            x = (st.road_l + 1.0) if side < 0 else (st.road_r - 1.0)
            if rng.random() < 0.3:
                x = (st.road_l - 1.0) if side < 0 else (st.road_r + 1.0)
            bikes.append((x, _z_in_view(rng, cam, x, 6, 25, width), motor, rng.random() < 0.85))
    vehicles = _place_vehicles(rng, cam, st, [(x, 1.0, z) for x, z, _, _ in bikes])
    tram = next((x for _, k, x in vehicles if k == TRAIN), None)

    _sky_and_background(cv, cam, st, rng)
    _draw_ground(cv, cam, st, rng, tram)
    for side in (-1, 1):
        _draw_facades(cv, cam, st, rng, side)

    # Everything standing on the ground, painted far to near: (z, order, drawer).
    items: list[tuple[float, int, Any]] = []

    def add(z: float, fn: Any, *args: Any) -> None:
        items.append((z, len(items), lambda: fn(cv, cam, rng, *args)))

    for side in (-1, 1):
        outer = st.walk_l if side < 0 else st.walk_r
        face = st.face_l if side < 0 else st.face_r
        # Walls, fences, hedges, guard rails along the outer edge of the sidewalk.
        z = rng.uniform(2, 8)
        while z < 70:
            seg = rng.uniform(6, 25)
            kind = rng.choice(5, p=[0.3, 0.3, 0.15, 0.05, 0.2])
            x = outer + side * 0.1
            if kind == 0:
                rgb = _jitter(rng, ((150, 150, 165), (175, 165, 150), (120, 115, 110))[
                    rng.integers(3)], 12)
                add(z + seg, _draw_long_plane, x, z, z + seg, rng.uniform(0.8, 2.2), WALL, rgb)
            elif kind == 1:
                rgb = _jitter(rng, ((170, 160, 140), (90, 110, 95), (140, 140, 145))[
                    rng.integers(3)], 12)
                add(z + seg, _draw_long_plane, x, z, z + seg, rng.uniform(1.0, 2.0), FENCE, rgb)
            elif kind == 2:
                add(z + seg, _draw_long_plane, x, z, z + seg, rng.uniform(0.8, 1.6), VEG,
                    _jitter(rng, (60, 100, 45), 15))
            elif kind == 3:
                add(z + seg, _draw_long_plane, x, z, z + seg, 0.8, GUARD_RAIL,
                    _jitter(rng, (170, 170, 175), 10))
            z += seg + rng.uniform(0, 10)
        # Trees in the strip between sidewalk and facade (or at the sidewalk's edge).
        for _ in range(rng.integers(1, 4)):
            tx = (outer + face) / 2 if abs(face - outer) > 1.5 else outer - side * 0.6
            zt = rng.uniform(6, 50)
            add(zt, _draw_tree, tx, zt)
        # Poles at the curb.
        curb = (st.road_l - 0.5) if side < 0 else (st.road_r + 0.5)
        for _ in range(rng.integers(1, 5)):
            zp = rng.uniform(6, 45)
            add(zp, _draw_pole, curb + side * rng.uniform(0, 0.4), zp, st)
        # Pedestrians on the sidewalk.
        for _ in range(rng.integers(1, 4)):
            inner = st.road_l if side < 0 else st.road_r
            xa, xb = sorted((outer - side * 0.4, inner + side * 0.4))
            for _ in range(6):  # find a spot no nearer vehicle hides
                xp = rng.uniform(xa, xb)
                zp = _z_in_view(rng, cam, xp, 5, 40, width)
                if _free_view(cam, xp, 0.4, zp, vehicles):
                    break
            add(zp, _person_shape, xp, zp, PERSON)
        if rng.random() < 0.5:
            zs = rng.uniform(6, 30)
            lid = STATIC if rng.random() < 0.7 else DYNAMIC
            add(zs, _draw_static, outer - side * 0.6, zs, lid)
    for z, kind, x in vehicles:
        add(z, _draw_vehicle, kind, x, z)
    for x, z, motor, ridden in bikes:
        add(z, _draw_two_wheeler, x, z, motor, ridden)
    items.sort(key=lambda t: (-t[0], t[1]))
    for _, _, draw in items:
        draw()

    if rng.random() < 0.4:  # the ego vehicle's bonnet at the bottom edge
        hgt = height * rng.uniform(0.04, 0.1)
        cv.ellipse((width * rng.uniform(0.45, 0.55), height + hgt * 0.2), (width * 0.8, hgt * 1.2),
                   EGO_VEHICLE, _jitter(rng, (40, 45, 55), 15))
    if rng.random() < 0.3:  # a dark rectification border, 'unlabeled'
        b = int(rng.integers(1, 4))
        for sl in ((slice(None), slice(0, b)), (slice(None), slice(width - b, None))):
            cv.label[sl] = UNLABELED
            cv.color[sl] = 5
    return _render(cv, rng), cv.label


def _render(cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Texture, light and degrade the colour canvas into a camera-like RGB image."""
    h, w = cv.label.shape
    lab = cv.label
    # Uniform noise is ~4x cheaper to draw than Gaussian and looks the same after blur.
    fine = rng.random((h, w), dtype=np.float32) * 3.4 - 1.7
    mid = cv2.resize(rng.standard_normal((h // 4 + 1, w // 4 + 1), dtype=np.float32), (w, h),
                     interpolation=cv2.INTER_LINEAR)
    low = cv2.resize(rng.standard_normal((h // 24 + 2, w // 24 + 2), dtype=np.float32), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    lum = _AMP[:, 0][lab] * fine + _AMP[:, 1][lab] * mid + _AMP[:, 2][lab] * low
    # Patterns that identify a class by texture: fence mesh, wall courses (as a gain map).
    yy = np.arange(h, dtype=np.int32)[:, None]
    xx = np.arange(w, dtype=np.int32)[None, :]
    p = max(3, h // 48)
    mesh = (((xx + yy) % p) == 0) | (((xx - yy) % p) == 0)
    gain = np.where((lab == FENCE) & mesh, np.float32(0.55), np.float32(1.0))
    gain[(lab == WALL) & ((yy % max(3, h // 40)) == 0)] = 0.8
    # Clouds: soft white blobs where the sky shows.
    cloud = cv2.resize(rng.standard_normal((4, 8), dtype=np.float32), (w, h),
                       interpolation=cv2.INTER_CUBIC) * rng.uniform(0.3, 0.8) + low * 0.2
    cloud = np.clip(cloud, 0, 1) * (lab == SKY)
    # A building's shadow across the ground.
    if rng.random() < 0.5:
        m = np.zeros((h, w), np.uint8)
        x0, x1 = sorted(rng.uniform(-0.2, 1.2, 2) * w)
        x2 = x1 + w * rng.uniform(-0.5, 0.5)
        cv2.fillPoly(m, [np.array([(x0, h * 0.4), (x1, h * 0.4), (x2, h), (x0 - w * 0.3, h)],
                                  np.int32)], 1)
        gain[(m == 1) & _GROUND[lab]] *= rng.uniform(0.55, 0.75)
    keep = gain * (1 - cloud)
    img = cv.color * keep[..., None] + (lum * gain + 235 * cloud)[..., None]
    img[..., 1] += np.where(lab == VEG, 10 * mid, 0)  # leaves vary in hue, not just brightness
    # Per-image lighting: contrast, brightness, colour temperature.
    temp = rng.uniform(-0.08, 0.08)
    contrast = rng.uniform(0.75, 1.2)
    offset = 128 * (1 - contrast) + rng.uniform(-25, 20)
    scale = np.array([1 + temp, 1.0, 1 - temp], np.float32) * contrast
    img = img * scale + offset * np.array([1 + temp, 1.0, 1 - temp], np.float32)
    if rng.random() < 0.7:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.0))
    img += (rng.random(img.shape, dtype=np.float32) - 0.5) * rng.uniform(5, 16)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:  # JPEG artefacts, as in images that went through a web pipeline
        q = int(rng.integers(60, 96))
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out


# --- dataset writer --------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    """Parse an image size written `HxW` (height first, e.g. `256x512`) into (height, width)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise DataError(f"size must be HxW in pixels, e.g. 256x512; got {text!r}") from None
    if height < 32 or width < 32:
        raise DataError(f"size must be at least 32x32 pixels, got {text!r}")
    return height, width


def _names(split: str, count: int) -> list[tuple[str, str]]:
    """(city, stem) per image: contiguous blocks per city, frame 19 like real gtFine files."""
    cities = CITIES[split]
    out = []
    for i in range(count):
        c = i * len(cities) // count
        seq = i - (c * count + len(cities) - 1) // len(cities)
        city = cities[c]
        out.append((city, f"{city}_{seq:06d}_000019"))
    return out


def _write_one(task: tuple[str, int, str, str, str, int, int, int]) -> tuple[str, np.ndarray]:
    split, index, root, city, stem, height, width, seed = task
    cv2.setNumThreads(1)  # one image per process: threads would just fight over the cores
    image, label_ids = generate_scene(np.random.default_rng([seed, _SPLIT_IDS[split], index]),
                                      height, width)
    train_ids = LABEL_TO_TRAIN[label_ids].astype(np.uint8)
    img_dir = Path(root, "leftImg8bit", split, city)
    gt_dir = Path(root, "gtFine", split, city)
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    img_path = img_dir / f"{stem}_leftImg8bit.png"
    for path, array in ((img_path, image[..., ::-1]),  # cv2 writes BGR
                        (gt_dir / f"{stem}_gtFine_labelIds.png", label_ids),
                        (gt_dir / f"{stem}_gtFine_labelTrainIds.png", train_ids)):
        if not cv2.imwrite(str(path), np.ascontiguousarray(array)):
            raise DataError(f"could not write {path}; check that the disk is writable and not full")
    return str(img_path), np.bincount(train_ids.ravel(), minlength=256)


def write_dataset(root: str | os.PathLike[str], *, train: int = 8, val: int = 4,
                  size: tuple[int, int] = (256, 512), seed: int = 0, workers: int | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Write a synthetic dataset in the Cityscapes layout under `root`.

    Files: `leftImg8bit/{split}/{city}/{city}_{seq:06d}_000019_leftImg8bit.png` (RGB) and,
    beside them under `gtFine/`, `..._gtFine_labelIds.png` (official ids) and
    `..._gtFine_labelTrainIds.png` (train ids, 255 = ignore), plus `synthetic.json` recording
    the parameters and the per-class pixel counts. Image `i` of a split depends only on
    (seed, split, i, size), so any number of workers gives byte-identical files.

    Args:
        root: output directory (created; existing files with the same names are overwritten).
        train, val: number of images per split.
        size: (height, width) in pixels.
        seed: base seed.
        workers: processes to use; None = all CPU cores, 0 or 1 = in this process.
        progress: show a tqdm progress bar.

    Returns:
        {"root", "manifest", "counts": {split: n}, "images": {split: [paths]},
        "class_pixels": {class: pixels over all splits}}.
    """
    height, width = (int(v) for v in size)
    if height < 32 or width < 32:
        raise DataError(f"size must be at least 32x32 pixels, got {height}x{width}")
    counts = {"train": int(train), "val": int(val)}
    for split, n in counts.items():
        if n < 0:
            raise DataError(f"--{split} must be >= 0 images, got {n}")
    root_path = Path(root)
    if root_path.exists() and not root_path.is_dir():
        raise DataError(f"{root_path} exists and is not a directory; pick another --out")
    root_path.mkdir(parents=True, exist_ok=True)

    tasks = [(split, i, str(root_path), city, stem, height, width, int(seed))
             for split, n in counts.items() for i, (city, stem) in enumerate(_names(split, n))]
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(int(workers), len(tasks) or 1))

    from tqdm import tqdm

    results: dict[tuple[str, int], tuple[str, np.ndarray]] = {}
    bar = tqdm(total=len(tasks), desc="synth", unit="img", disable=not progress)
    if workers == 1:
        for t in tasks:
            results[(t[0], t[1])] = _write_one(t)
            bar.update()
    else:
        import multiprocessing as mp

        # spawn, not fork: the parent may hold torch/OpenMP threads, which fork can deadlock.
        with mp.get_context("spawn").Pool(workers) as pool:
            for t, res in zip(tasks, pool.imap(_write_one, tasks, chunksize=4), strict=True):
                results[(t[0], t[1])] = res
                bar.update()
    bar.close()

    per_split = {s: np.zeros(256, np.int64) for s in counts}
    images: dict[str, list[str]] = {s: [] for s in counts}
    for (split, _), (path, hist) in sorted(results.items()):
        images[split].append(path)
        per_split[split] += hist
    manifest = {
        "format": "ocrnet-synthetic", "generator_version": GENERATOR_VERSION, "seed": int(seed),
        "size": [height, width], "counts": counts,
        "cities": {s: list(CITIES[s]) for s in counts},
        "class_pixels": {s: {name: int(per_split[s][i]) for i, name in enumerate(CLASSES)}
                         | {"ignore": int(per_split[s][IGNORE_INDEX])} for s in counts},
    }
    manifest_path = root_path / "synthetic.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(per_split.values())
    return {
        "root": str(root_path), "manifest": str(manifest_path), "counts": counts,
        "images": {s: sorted(v) for s, v in images.items()},
        "class_pixels": {name: int(total[i]) for i, name in enumerate(CLASSES)},
    }
