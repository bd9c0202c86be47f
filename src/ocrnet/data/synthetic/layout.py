"""Where things go: the camera, the street's cross-section, and the placement of moving objects.

Placement only draws numbers; nothing here paints. Vehicles are kept apart per lane and out of
the line of sight to the two-wheelers, which are rare classes that would otherwise often be hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ocrnet.data.synthetic.actors import VEHICLES
from ocrnet.data.synthetic.geometry import Camera
from ocrnet.data.synthetic.labels import BUS, CAR, TRAIN, TRUCK


@dataclass
class Street:
    road_l: float  # road edges, m (x)
    road_r: float
    lanes: list[float]  # lane centres, m
    walk_l: float  # outer sidewalk edges
    walk_r: float
    face_l: float  # building facade planes
    face_r: float
    z_far: float


class Vehicle(NamedTuple):
    z: float  # depth of the rear face, m
    kind: int  # label id: CAR, TRUCK, BUS or TRAIN
    x: float  # lateral centre, m


class TwoWheeler(NamedTuple):
    x: float
    z: float
    motor: bool  # a motorcycle, else a bicycle
    ridden: bool


# Odds that a scene has one vehicle of each large kind, in the order they are drawn.
_LARGE_VEHICLE_ODDS = ((TRAIN, 0.6), (BUS, 0.65), (TRUCK, 0.7))


def layout(rng: np.random.Generator, height: int, width: int) -> tuple[Camera, Street]:
    """A camera (focal length, height, horizon) and the street it looks down."""
    cam = Camera(f=width * rng.uniform(0.95, 1.15), hc=rng.uniform(1.3, 1.7),
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
    st = Street(road_l, road_r, lanes, walk_l, walk_r, face_l, face_r, rng.uniform(120, 200))
    return cam, st


def z_in_view(rng: np.random.Generator, cam: Camera, x: float, z_min: float, z_max: float,
              width: int) -> float:
    """A depth in [z_min, z_max] at which lateral position x still projects inside the frame."""
    room = (cam.vx - 0.08 * width) if x < 0 else (0.92 * width - cam.vx)
    z_min = max(z_min, cam.f * abs(x) / max(room, 1.0))
    return float(rng.uniform(z_min, max(z_min, z_max) + 1))


def _max_length(kind: int) -> float:
    return VEHICLES[kind].length[1]


def free_view(cam: Camera, x: float, half: float, z: float, vehicles: list[Vehicle]) -> bool:
    """True when no nearer vehicle covers the columns of an object at (x +- half, z)."""
    a, b = cam.f * (x - half) / z, cam.f * (x + half) / z
    for zv, kind, xv in vehicles:
        # A box's columns span its near face and, towards the vanishing point, its far face.
        ends = [cam.f * (xv + dx) / zz for dx in (-1.4, 1.4)
                for zz in (zv, zv + _max_length(kind))]
        if zv < z and min(ends) < b and max(ends) > a:
            return False
    return True


def place_two_wheelers(rng: np.random.Generator, cam: Camera, st: Street,
                       width: int) -> list[TwoWheeler]:
    """A motorcycle and a bicycle (each most of the time), near the curb or on the sidewalk."""
    bikes = []
    for motor, p in ((True, 0.85), (False, 0.85)):
        if rng.random() < p:
            side = -1 if rng.random() < 0.5 else 1
            x = (st.road_l + 1.0) if side < 0 else (st.road_r - 1.0)
            if rng.random() < 0.3:
                x = (st.road_l - 1.0) if side < 0 else (st.road_r + 1.0)
            z = z_in_view(rng, cam, x, 6, 25, width)
            bikes.append(TwoWheeler(x, z, motor, rng.random() < 0.85))
    return bikes


def place_vehicles(rng: np.random.Generator, cam: Camera, st: Street,
                   keep_clear: list[tuple[float, float, float]]) -> list[Vehicle]:
    """Vehicles, kept apart per lane so they do not interpenetrate, and never in front of the
    small objects in `keep_clear` ((x, half width, z): the two-wheelers), which are the rare
    classes and would otherwise often be hidden."""
    want = [kind for kind, p in _LARGE_VEHICLE_ODDS if rng.random() < p]
    want += [CAR] * int(rng.integers(2, 8))
    taken: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(st.lanes))}
    out: list[Vehicle] = []
    for kind in want:
        length = _max_length(kind) + 1
        zmin = 7.0 if kind == CAR else 10.0
        for _ in range(8):
            lane = int(rng.integers(len(st.lanes)))
            z = rng.uniform(zmin, 45 if kind == CAR else 35)
            x = st.lanes[lane] + rng.uniform(-0.3, 0.3)
            if all(z + length + 1 < a or z > b + 1 for a, b in taken[lane]) and all(
                    free_view(cam, *c, [Vehicle(z, kind, x)]) for c in keep_clear):
                taken[lane].append((z, z + length))
                out.append(Vehicle(z, kind, x))
                break
    return out
