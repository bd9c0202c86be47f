"""The street itself: sky, ground (road, sidewalks, terrain, markings), facades with windows,
trees, and the walls, fences, hedges and guard rails along the sidewalks.

Every drawer consumes the scene's random generator in a fixed order, which is what makes a
(seed, index, size) give the same pixels; reordering two draws changes every scene.
"""

from __future__ import annotations

import numpy as np

from ocrnet.data.synthetic.geometry import (
    Camera,
    Canvas,
    facade_quads,
    ground_quad,
    jitter,
    shade,
)
from ocrnet.data.synthetic.labels import BUILDING, ROAD, SIDEWALK, SKY, TERRAIN, VEG
from ocrnet.data.synthetic.layout import Street

_FACADES = ((190, 170, 140), (150, 150, 150), (160, 90, 70), (215, 205, 185), (100, 100, 105),
            (180, 185, 160), (200, 160, 120), (120, 110, 100))


# --- sky and ground --------------------------------------------------------------------------
def draw_sky_and_background(cv: Canvas, cam: Camera, st: Street,
                            rng: np.random.Generator) -> None:
    """The sky gradient, then hazy far buildings and trees along the horizon."""
    h = cv.label.shape[0]
    overcast = rng.random() < 0.3
    top = jitter(rng, (150, 160, 170) if overcast else (70, 120, 190), 15)
    bottom = jitter(rng, (200, 205, 210) if overcast else (175, 200, 225), 10)
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
                       VEG, shade(jitter(rng, (90, 120, 70)), 0.85) * 0.7 + bottom * 0.3)
        else:
            bh = rng.uniform(6, 35)
            col = jitter(rng, _FACADES[rng.integers(len(_FACADES))], 15) * 0.65 + bottom * 0.35
            cv.fill(cam.quad([(x, -1, z), (x + bw, -1, z), (x + bw, bh, z), (x, bh, z)]),
                    BUILDING, col)
        x += bw


def draw_ground(cv: Canvas, cam: Camera, st: Street, rng: np.random.Generator,
                tram_x: float | None) -> None:
    """Terrain, road, sidewalks with curbs and verges, lane markings and tram rails."""
    z0, z1 = 1.0, st.z_far
    _draw_terrain(cv, cam, st, rng, z0, z1)
    road_rgb = jitter(rng, (82, 82, 86), 10)
    cv.fill(ground_quad(cam, st.road_l, st.road_r, z0, z1), ROAD, road_rgb)
    walk_rgb = jitter(rng, (165, 150, 150), 15)
    _draw_sidewalks(cv, cam, st, walk_rgb, z0, z1)
    _draw_verges(cv, cam, st, rng)
    for edge, out in ((st.road_l, -0.2), (st.road_r, 0.2)):  # curb: a lighter band, sidewalk
        q = cam.quad([(edge, 0, z0), (edge, 0.15, z0), (edge, 0.15, z1), (edge, 0, z1)])
        cv.fill(q, SIDEWALK, shade(walk_rgb, 1.15))
        cv.paint(ground_quad(cam, edge + out, edge, z0, z1), shade(walk_rgb, 1.08))
    _draw_markings(cv, cam, st, rng, z0, z1)
    if tram_x is not None:  # tram rails are part of the road in Cityscapes
        for xr in (tram_x - 0.72, tram_x + 0.72):
            cv.paint(ground_quad(cam, xr - 0.05, xr + 0.05, z0, z1), (150, 150, 155))


def _draw_terrain(cv: Canvas, cam: Camera, st: Street, rng: np.random.Generator, z0: float,
                  z1: float) -> None:
    """Whatever lies beyond the sidewalks (grass strip or paved ground) up to the facades."""
    far = 400.0
    for side in (-1, 1):
        outer, face = (st.walk_l, st.face_l) if side < 0 else (st.walk_r, st.face_r)
        cv.fill(ground_quad(cam, outer, side * far, z0, z1), TERRAIN,
                jitter(rng, (95, 125, 55), 18))
        if rng.random() < 0.35:  # packed soil instead of grass in places
            za = rng.uniform(6, 30)
            cv.fill(ground_quad(cam, outer, face, za, za + rng.uniform(5, 20)), TERRAIN,
                    jitter(rng, (135, 115, 80), 12))


def _draw_sidewalks(cv: Canvas, cam: Camera, st: Street, walk_rgb: np.ndarray, z0: float,
                    z1: float) -> None:
    for a, b in ((st.walk_l, st.road_l), (st.road_r, st.walk_r)):
        cv.fill(ground_quad(cam, a, b, z0, z1), SIDEWALK, walk_rgb)
        # Paving joints, projected so they converge like the real thing.
        z = np.cumsum(np.full(80, 0.6)) * np.linspace(1, 3, 80) + z0
        z = z[z < 60]
        zz1 = z + 0.05 + 0.002 * z
        quads = np.stack([np.stack(cam.project(xv, 0.0, zv), -1)
                          for xv, zv in ((a, z), (b, z), (b, zz1), (a, zz1))], 1)
        cv.paint_many(quads, shade(walk_rgb, 0.8))


def _draw_verges(cv: Canvas, cam: Camera, st: Street, rng: np.random.Generator) -> None:
    grass = jitter(rng, (100, 135, 60), 15)
    for outer, side in ((st.walk_l, -1), (st.walk_r, 1)):
        if rng.random() < 0.6:  # a grass verge along the sidewalk's outer edge, in stretches
            wv = rng.uniform(0.8, 2.0)
            z = rng.uniform(3, 12)
            while z < 80:
                seg = rng.uniform(8, 30)
                cv.fill(ground_quad(cam, outer, outer - side * wv, z, z + seg), TERRAIN, grass)
                z += seg + rng.uniform(2, 12)


def _draw_markings(cv: Canvas, cam: Camera, st: Street, rng: np.random.Generator, z0: float,
                   z1: float) -> None:
    """Lane markings (still road): dashed between lanes, solid at the edges, sometimes a zebra."""
    white = jitter(rng, (215, 215, 210), 15)
    lane_w = st.lanes[1] - st.lanes[0] if len(st.lanes) > 1 else 3.2
    for xb in st.lanes[:-1]:
        xm = xb + lane_w / 2
        z = z0 + rng.uniform(0, 9)
        while z < z1:
            cv.paint(ground_quad(cam, xm - 0.08, xm + 0.08, z, z + 3), white)
            z += 9
    for xe in (st.road_l + 0.3, st.road_r - 0.3):
        cv.paint(ground_quad(cam, xe - 0.07, xe + 0.07, z0, z1), white)
    if rng.random() < 0.35:
        zc = rng.uniform(8, 25)
        x = st.road_l + 0.5
        while x < st.road_r - 0.5:
            cv.paint(ground_quad(cam, x, x + 0.5, zc, zc + 3), white)
            x += 1.0


# --- facades and vegetation ------------------------------------------------------------------
def draw_facades(cv: Canvas, cam: Camera, st: Street, rng: np.random.Generator,
                 side: int) -> None:
    """Buildings (or a park: trees) along one side of the street, far to near."""
    face = st.face_l if side < 0 else st.face_r
    if rng.random() < 0.15:  # a park side: a row of big trees instead of facades
        for z in np.arange(st.z_far, 5, -rng.uniform(6, 12)):
            draw_tree(cv, cam, rng, face + side * rng.uniform(0, 4), float(z), big=True)
        return
    zs = [st.z_far]
    while zs[-1] > 3:
        zs.append(zs[-1] - rng.uniform(8, 30))
    for za, zb in zip(zs[1:], zs[:-1], strict=False):
        za = max(za, 1.5)
        bh = rng.uniform(8, 28)
        if rng.random() < 0.1:  # a gap between buildings shows the sky
            continue
        rgb = jitter(rng, _FACADES[rng.integers(len(_FACADES))], 15)
        q = cam.quad([(face, 0, za), (face, 0, zb), (face, bh, zb), (face, bh, za)])
        cv.fill(q, BUILDING, shade(rgb, 0.9))
        if cam.px(1.2, zb) >= 1.5:
            _draw_windows(cv, cam, rng, face, za, zb, bh, rgb)


def _draw_windows(cv: Canvas, cam: Camera, rng: np.random.Generator, face: float, za: float,
                  zb: float, bh: float, rgb: np.ndarray) -> None:
    """A grid of floors and bays, only where windows are at least a pixel big. Drawn in a few
    batches (one fillPoly each) because hundreds of small calls are slow."""
    floor_h, bay = rng.uniform(2.8, 3.4), rng.uniform(2.2, 3.5)
    ys = np.arange(rng.uniform(0.6, 1.5) + (3 if rng.random() < 0.5 else 0), bh - 1.5, floor_h)
    zs = np.arange(za + 0.6, zb - 1.2, bay)
    zs = zs[cam.px(1.0, zs) >= 1.5]
    if not len(ys) or not len(zs):
        return
    y, z = (a.ravel() for a in np.meshgrid(ys, zs))
    glass = jitter(rng, (60, 70, 85), 15)
    if rng.random() < 0.5:  # window frames
        cv.paint_many(facade_quads(cam, face, y - 0.15, y + 1.65, z - 0.15, z + 1.25),
                      shade(rgb, 1.2))
    quads = facade_quads(cam, face, y, y + 1.5, z, z + 1.1)
    group = rng.integers(3, size=len(quads))
    for g in range(3):
        cv.paint_many(quads[group == g], shade(glass, 0.75 + 0.25 * g))


def draw_tree(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float,
              big: bool = False) -> None:
    """A trunk and a crown of overlapping leaf ellipses, all vegetation."""
    trunk_h = rng.uniform(2.0, 4.0) * (1.3 if big else 1)
    tw = max(0.25, 4 / cam.f * z)  # the trunk stays a few pixels wide
    cv.fill(cam.quad([(x - tw / 2, 0, z), (x + tw / 2, 0, z), (x + tw / 2, trunk_h + 1, z),
                      (x - tw / 2, trunk_h + 1, z)]), VEG, jitter(rng, (80, 60, 45), 10))
    leaf = jitter(rng, (70, 105, 40), 18)
    r = rng.uniform(1.5, 3.0) * (1.5 if big else 1)
    for _ in range(rng.integers(3, 7)):
        cx, cy = x + rng.uniform(-r, r) * 0.6, trunk_h + r + rng.uniform(-r, r) * 0.5
        rr = r * rng.uniform(0.6, 1.0)
        cv.ellipse(cam.project(cx, cy, z), (cam.px(rr, z), cam.px(rr * 0.9, z)), VEG,
                   shade(leaf, rng.uniform(0.75, 1.2)))


def draw_long_plane(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z0: float,
                    z1: float, height: float, label_id: int, rgb: np.ndarray) -> None:
    """A wall, fence, hedge or guard rail running along the street at lateral position x."""
    cv.fill(cam.quad([(x, 0, z0), (x, 0, z1), (x, height, z1), (x, height, z0)]), label_id, rgb)
    # Posts / joints every couple of metres, colour only.
    for z in np.arange(z0, z1, rng.uniform(2, 4)):
        cv.paint(cam.quad([(x, 0, z), (x, 0, z + 0.12), (x, height, z + 0.12), (x, height, z)]),
                 shade(rgb, 0.7))
