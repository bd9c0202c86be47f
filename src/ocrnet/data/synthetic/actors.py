"""Things that move: people, two-wheelers with or without riders, and vehicles.

Each vehicle kind has one drawer in the `VEHICLES` table, beside the range of lengths it draws
(the layout keeps the longest clear of other objects). Every drawer consumes the scene's random
generator in a fixed order, which is what makes a (seed, index, size) give the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ocrnet.data.synthetic.geometry import Camera, Canvas, box_faces, draw_box, jitter, shade
from ocrnet.data.synthetic.labels import BICYCLE, BUS, CAR, MOTORCYCLE, RIDER, TRAIN, TRUCK

_CAR_COLORS = ((170, 172, 178), (30, 32, 38), (25, 40, 90), (150, 20, 25), (215, 215, 210),
               (30, 70, 40), (90, 95, 100), (60, 90, 150))


# --- people ----------------------------------------------------------------------------------
def _clothes(rng: np.random.Generator, label_id: int) -> tuple[np.ndarray, ...]:
    """Skin, upper-body and leg colours."""
    skin = jitter(rng, ((225, 185, 150), (180, 130, 95), (120, 80, 60))[rng.integers(3)], 10)
    if label_id == RIDER:  # riders wear bright jackets and helmets: visibly not pedestrians
        top = jitter(rng, ((230, 200, 30), (220, 90, 20), (40, 160, 60), (200, 30, 40))[
            rng.integers(4)], 20)
    else:
        top = jitter(rng, ((40, 50, 80), (150, 40, 40), (220, 220, 215), (50, 50, 50),
                           (180, 150, 110), (70, 110, 160), (110, 70, 110))[rng.integers(7)], 20)
    legs = jitter(rng, ((30, 35, 60), (40, 40, 40), (120, 110, 95))[rng.integers(3)], 10)
    return skin, top, legs


def person_shape(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float,
                 label_id: int, base_y: float = 0.0, seated: bool = False,
                 facing: int = 1) -> None:
    """A pedestrian (PERSON) or, seated on a two-wheeler, a RIDER, standing at (x, base_y, z)."""
    height = rng.uniform(1.55, 1.9)
    s = cam.f / z
    gx, gy = cam.project(x, base_y, z)
    unit = cv.label.shape[0] / 256
    s = max(s, 14 * unit / height)  # at least ~14 px tall at 256 px height
    skin, top, legs = _clothes(rng, label_id)
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
                    label_id, shade(legs, 1.0 if sx < 0 else 0.85))
        lean = 0.0
    torso = np.array([(gx - hw * 0.7, hip_y), (gx + hw * 0.7, hip_y), (gx + lean + hw, neck_y),
                      (gx + lean - hw, neck_y)])
    cv.fill(torso, label_id, top)
    for sx in (-1, 1):  # arms
        ax = gx + lean + sx * hw
        ex = ax + (facing * 0.2 * height * s if seated else sx * 0.05 * height * s)
        cv.fill(np.array([(ax - hw * 0.25, neck_y), (ax + hw * 0.25, neck_y),
                          (ex + hw * 0.2, hip_y), (ex - hw * 0.2, hip_y)]), label_id,
                shade(top, 0.85))
    head_r = 0.065 * height * s
    hx, hy = gx + lean, neck_y - head_r * 1.1
    cv.disc((hx, hy), head_r, label_id, skin)
    if label_id == RIDER:
        cv.ellipse((hx, hy - head_r * 0.3), (head_r * 1.15, head_r * 0.85), label_id,
                   jitter(rng, (240, 240, 240) if rng.random() < 0.5 else (30, 30, 35), 10))
    else:
        cv.ellipse((hx, hy - head_r * 0.5), (head_r, head_r * 0.5), label_id,
                   jitter(rng, (50, 35, 25), 15))


# --- two-wheelers ----------------------------------------------------------------------------
def _motorbike_body(cv: Canvas, rng: np.random.Generator, gx: float, gy: float, back: float,
                    front: float, rpx: float, facing: int) -> float:
    """Tank, seat and engine between the wheels; returns the seat's image row."""
    body = jitter(rng, ((30, 30, 30), (170, 20, 20), (20, 60, 150), (210, 150, 20))[
        rng.integers(4)], 15)
    cv.fill(np.array([(back, gy - rpx * 1.2), (front, gy - rpx * 1.5),
                      (front - facing * rpx * 0.4, gy - rpx * 2.6),
                      (back + facing * rpx * 0.5, gy - rpx * 2.4), (back, gy - rpx * 2.0)]),
            MOTORCYCLE, body)
    cv.paint(np.array([(gx - rpx * 0.6, gy - rpx * 0.6), (gx + rpx * 0.6, gy - rpx * 0.6),
                       (gx + rpx * 0.6, gy - rpx * 1.4), (gx - rpx * 0.6, gy - rpx * 1.4)]),
             (120, 120, 125))
    return gy - rpx * 2.4


def _bicycle_frame(cv: Canvas, frame: np.ndarray, gx: float, gy: float, back: float,
                   front: float, rpx: float, facing: int, bar: float) -> float:
    """The frame's tubes as thin quads; returns the seat's image row."""
    seat = (gx - facing * rpx * 0.3, gy - rpx * 2.6)
    bb = (gx, gy - rpx)
    for a, b in (((back, gy - rpx), bb), (bb, seat), ((back, gy - rpx), seat),
                 (seat, (front - facing * rpx * 0.1, gy - rpx * 2.6)),
                 ((front, gy - rpx), (front - facing * rpx * 0.2, gy - rpx * 2.9))):
        d = np.array(b) - np.array(a)
        nrm = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-6) * bar / 2
        cv.fill(np.array([np.array(a) + nrm, np.array(b) + nrm, np.array(b) - nrm,
                          np.array(a) - nrm]), BICYCLE, frame)
    return seat[1]


def draw_two_wheeler(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float,
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
    frame = jitter(rng, ((30, 30, 35), (150, 20, 20), (20, 40, 120), (200, 200, 200))[
        rng.integers(4)], 15)
    for wx in (back, front):  # wheels: a dark tyre disc with a lighter hub
        cv.disc((wx, gy - rpx), rpx, label_id, (25, 25, 25))
        cv.disc((wx, gy - rpx), rpx * (0.35 if motor else 0.75), None,
                (90, 90, 95) if motor else shade(jitter(rng, (95, 95, 95), 5), 1.0))
    bar = max(2.0, 0.07 * s)
    if motor:
        seat_y = _motorbike_body(cv, rng, gx, gy, back, front, rpx, facing)
    else:
        seat_y = _bicycle_frame(cv, frame, gx, gy, back, front, rpx, facing, bar)
    if ridden:
        # The rider's hips sit on the seat: base_y in metres puts the feet near the pedals.
        base = (gy - seat_y) / s - 0.5 * 1.72 + 0.45
        person_shape(cv, cam, rng, x, z, RIDER, base_y=max(0.1, base), seated=True,
                     facing=facing)


# --- vehicles --------------------------------------------------------------------------------
class _Body(NamedTuple):
    w: float  # width, m
    length: float  # m
    wheel_r: float | None  # wheel radius, m; None: no wheels show (a tram's skirt hides them)


def _draw_car(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float,
              lengths: tuple[float, float]) -> _Body:
    w, h, length = rng.uniform(1.7, 1.9), rng.uniform(1.4, 1.6), rng.uniform(*lengths)
    rgb = jitter(rng, _CAR_COLORS[rng.integers(len(_CAR_COLORS))], 12)
    body = draw_box(cv, cam, (x - w / 2, x + w / 2, 0.12, h * 0.58, z, z + length), CAR, rgb)
    cab = (x - w / 2 + 0.12, x + w / 2 - 0.12, h * 0.58, h, z + 0.9, z + length - 1.1)
    f = draw_box(cv, cam, cab, CAR, shade(rgb, 0.95))
    glass = jitter(rng, (45, 55, 70), 10)
    cv.paint(f.rear(0.08, 0.92, 0.1, 0.85), glass)
    if f.side_x is not None:
        cv.paint(f.side(0.08, 0.92, 0.15, 0.85), shade(glass, 0.9))
    for u0, u1 in ((0.04, 0.2), (0.8, 0.96)):  # tail lights
        cv.paint(body.rear(u0, u1, 0.6, 0.8), (200, 25, 20))
    cv.paint(body.rear(0.38, 0.62, 0.2, 0.42), (225, 225, 220))  # plate (still car)
    return _Body(w, length, 0.33)


def _draw_truck(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float,
                lengths: tuple[float, float]) -> _Body:
    w, h, length = 2.5, rng.uniform(3.3, 4.0), rng.uniform(*lengths)
    rgb = jitter(rng, ((200, 195, 185), (200, 120, 40), (140, 120, 95), (90, 110, 70))[
        rng.integers(4)], 12)
    cab_rgb = jitter(rng, ((30, 60, 130), (170, 30, 30), (220, 220, 220))[rng.integers(3)], 12)
    draw_box(cv, cam, (x - w / 2 + 0.1, x + w / 2 - 0.1, 0.35, 3.0, z + length - 2.2,
                       z + length), TRUCK, cab_rgb)
    f = draw_box(cv, cam, (x - w / 2, x + w / 2, 0.9, h, z, z + length - 2.3), TRUCK, rgb)
    cv.paint(f.rear(0.49, 0.51, 0.05, 0.95), shade(rgb, 0.6))  # door seam
    cv.paint(f.rear(0.0, 1.0, 0.0, 0.06), (40, 40, 40))  # bumper
    if f.side_x is not None:
        cv.paint(f.side(0.1, 0.9, 0.55, 0.75), shade(cab_rgb, 0.9))  # logo band
    # Chassis under the box so the wheels have something to hang on.
    cv.fill(box_faces(cam, x - w / 2 + 0.2, x + w / 2 - 0.2, 0.3, 0.9, z + 0.3, z + length).hull,
            TRUCK, (35, 35, 38))
    return _Body(w, length, 0.5)


def _draw_bus(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float,
              lengths: tuple[float, float]) -> _Body:
    w, h, length = 2.55, rng.uniform(3.0, 3.3), rng.uniform(*lengths)
    rgb = jitter(rng, ((210, 90, 30), (225, 225, 225), (190, 40, 40))[rng.integers(3)], 10)
    f = draw_box(cv, cam, (x - w / 2, x + w / 2, 0.3, h, z, z + length), BUS, rgb)
    band = jitter(rng, (35, 45, 55), 8)
    cv.paint(f.rear(0.05, 0.95, 0.55, 0.9), band)
    if f.side_x is not None:
        cv.paint(f.side(0.02, 0.98, 0.4, 0.9), band)
        for u in np.arange(0.05, 0.95, 0.09):  # window pillars
            cv.paint(f.side(u, u + 0.012, 0.4, 0.9), rgb)
    cv.paint(f.rear(0.1, 0.3, 0.15, 0.25), (210, 40, 30))
    cv.paint(f.rear(0.7, 0.9, 0.15, 0.25), (210, 40, 30))
    return _Body(w, length, 0.5)


def _draw_tram(cv: Canvas, cam: Camera, rng: np.random.Generator, x: float, z: float,
               lengths: tuple[float, float]) -> _Body:
    """A tram (Cityscapes' `train`), long and segmented, on its rails."""
    w, h, length = 2.65, rng.uniform(3.4, 3.7), rng.uniform(*lengths)
    rgb = jitter(rng, ((235, 215, 40), (30, 150, 140), (235, 235, 225))[rng.integers(3)], 10)
    skirt = jitter(rng, (40, 40, 45), 8) if rng.random() < 0.5 else jitter(rng, (200, 40, 40), 10)
    f = draw_box(cv, cam, (x - w / 2, x + w / 2, 0.25, h, z, z + length), TRAIN, rgb)
    cv.paint(f.rear(0.0, 1.0, 0.0, 0.25), skirt)
    cv.paint(f.rear(0.08, 0.92, 0.45, 0.85), (30, 40, 50))  # windscreen
    if f.side_x is not None:
        cv.paint(f.side(0.0, 1.0, 0.0, 0.25), shade(skirt, 0.85))
        for u in np.arange(0.02, 0.98, 0.06):
            cv.paint(f.side(u, u + 0.045, 0.45, 0.85), (35, 45, 55))
    # Pantograph: a slim frame on the roof just behind the front, part of the train.
    px0, py0 = cam.project(x, h, z + 1.5)
    px1, py1 = cam.project(x, h + 1.0, z + 1.5)
    lw = max(2.0, cam.px(0.08, z))
    half = cam.px(0.6, z + 1.5)
    cv.fill(np.array([(px0 - lw / 2, py0), (px0 + lw / 2, py0), (px1 + lw / 2, py1),
                      (px1 - lw / 2, py1)]), TRAIN, (60, 60, 60))
    cv.fill(np.array([(px1 - half, py1 - lw), (px1 + half, py1 - lw), (px1 + half, py1),
                      (px1 - half, py1)]), TRAIN, (60, 60, 60))
    return _Body(w, length, None)


def _draw_wheels(cv: Canvas, cam: Camera, kind: int, x: float, z: float, w: float,
                 length: float, wheel_r: float) -> None:
    """Tyres peeking out below the body at the rear corners, and wheels on the visible side."""
    tyre = (22, 22, 24)
    for xx in (x - w / 2 + 0.05, x + w / 2 - 0.35):
        q = cam.quad([(xx, 0, z + 0.6), (xx + 0.3, 0, z + 0.6), (xx + 0.3, wheel_r * 1.1, z + 0.6),
                      (xx, wheel_r * 1.1, z + 0.6)])
        cv.fill(q, kind, tyre)
    side_x = x - w / 2 if x - w / 2 > 0 else (x + w / 2 if x + w / 2 < 0 else None)
    if side_x is not None:
        for zz in (z + 0.9, z + length - 0.9):
            cx, cy = cam.project(side_x, wheel_r, zz)
            r = cam.px(wheel_r, zz)
            cv.ellipse((cx, cy), (r * 0.5, r), kind, tyre)
            cv.ellipse((cx, cy), (r * 0.25, r * 0.5), kind, (130, 130, 135))


@dataclass(frozen=True)
class VehicleKind:
    """One kind of vehicle: the lengths it comes in and the drawer that paints it."""

    length: tuple[float, float]  # shortest and longest, m; the layout keeps the longest clear
    draw: Callable[[Canvas, Camera, np.random.Generator, float, float, tuple[float, float]],
                   _Body]


#: Every vehicle kind by its label id.
VEHICLES: dict[int, VehicleKind] = {
    CAR: VehicleKind((3.9, 4.8), _draw_car),
    TRUCK: VehicleKind((7.0, 10.0), _draw_truck),
    BUS: VehicleKind((11.0, 13.0), _draw_bus),
    TRAIN: VehicleKind((25.0, 35.0), _draw_tram),
}


def draw_vehicle(cv: Canvas, cam: Camera, rng: np.random.Generator, kind: int, x: float,
                 z: float) -> float:
    """A car, truck, bus or tram seen from behind/the side; returns its length in metres."""
    spec = VEHICLES[kind]
    w, length, wheel_r = spec.draw(cv, cam, rng, x, z, spec.length)
    if wheel_r is not None:
        _draw_wheels(cv, cam, kind, x, z, w, length, wheel_r)
    return length
