"""One street scene, step by step: lay out, place, paint far to near, render.

The order of the steps is the order in which they draw from the scene's random generator; it is
part of the output (see tests/test_synthetic_golden.py), so steps may be split or renamed but
not reordered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from ocrnet.data.synthetic.actors import draw_two_wheeler, draw_vehicle, person_shape
from ocrnet.data.synthetic.furniture import draw_pole, draw_static
from ocrnet.data.synthetic.geometry import Camera, Canvas, jitter
from ocrnet.data.synthetic.labels import (
    DYNAMIC,
    EGO_VEHICLE,
    FENCE,
    GUARD_RAIL,
    PERSON,
    STATIC,
    TRAIN,
    UNLABELED,
    VEG,
    WALL,
)
from ocrnet.data.synthetic.layout import (
    Street,
    Vehicle,
    free_view,
    layout,
    place_two_wheelers,
    place_vehicles,
    z_in_view,
)
from ocrnet.data.synthetic.render import render
from ocrnet.data.synthetic.scenery import (
    draw_facades,
    draw_ground,
    draw_long_plane,
    draw_sky_and_background,
    draw_tree,
)
from ocrnet.errors import DataError

#: Bumped whenever a (seed, index, size) starts giving other pixels; recorded in the manifest.
GENERATOR_VERSION = 1
#: Smallest height and width drawn (the layout's sizes are tuned for 256x512).
MIN_SIZE = 32


class _Item(NamedTuple):
    """Something standing on the ground, drawn as `draw(cv, cam, rng, *args)` in depth order."""

    z: float
    draw: Callable[..., Any]
    args: tuple[Any, ...]


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
    if height < MIN_SIZE or width < MIN_SIZE:
        raise DataError(f"synthetic scenes need at least {MIN_SIZE}x{MIN_SIZE} pixels, "
                        f"got {height}x{width}")
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else (
        np.random.default_rng(rng_or_seed))
    cam, st = layout(rng, height, width)
    cv = Canvas(height, width)
    # Two-wheelers first, near the curb (or parked on the sidewalk); vehicles then keep clear.
    bikes = place_two_wheelers(rng, cam, st, width)
    vehicles = place_vehicles(rng, cam, st, [(b.x, 1.0, b.z) for b in bikes])
    tram = next((v.x for v in vehicles if v.kind == TRAIN), None)

    draw_sky_and_background(cv, cam, st, rng)
    draw_ground(cv, cam, st, rng, tram)
    for side in (-1, 1):
        draw_facades(cv, cam, st, rng, side)

    items = [item for side in (-1, 1)
             for item in _street_side(rng, cam, st, side, vehicles, width)]
    items += [_Item(v.z, draw_vehicle, (v.kind, v.x, v.z)) for v in vehicles]
    items += [_Item(b.z, draw_two_wheeler, tuple(b)) for b in bikes]
    # Far to near, so nearer objects occlude farther ones; the sort is stable, so objects at
    # the same depth keep the order they were placed in.
    for item in sorted(items, key=lambda it: -it.z):
        item.draw(cv, cam, rng, *item.args)

    _draw_frame_edges(cv, rng)
    return render(cv, rng), cv.label


def _street_side(rng: np.random.Generator, cam: Camera, st: Street, side: int,
                 vehicles: list[Vehicle], width: int) -> list[_Item]:
    """What stands along one side of the street: walls and fences, trees, poles, pedestrians,
    clutter."""
    outer = st.walk_l if side < 0 else st.walk_r
    face = st.face_l if side < 0 else st.face_r
    items = _edges(rng, outer + side * 0.1)
    for _ in range(rng.integers(1, 4)):  # trees between sidewalk and facade (or at its edge)
        tx = (outer + face) / 2 if abs(face - outer) > 1.5 else outer - side * 0.6
        zt = rng.uniform(6, 50)
        items.append(_Item(zt, draw_tree, (tx, zt)))
    curb = (st.road_l - 0.5) if side < 0 else (st.road_r + 0.5)
    for _ in range(rng.integers(1, 5)):  # poles at the curb
        zp = rng.uniform(6, 45)
        items.append(_Item(zp, draw_pole, (curb + side * rng.uniform(0, 0.4), zp)))
    inner = st.road_l if side < 0 else st.road_r
    for _ in range(rng.integers(1, 4)):
        xp, zp = _pedestrian_spot(rng, cam, sorted((outer - side * 0.4, inner + side * 0.4)),
                                  vehicles, width)
        items.append(_Item(zp, person_shape, (xp, zp, PERSON)))
    if rng.random() < 0.5:
        zs = rng.uniform(6, 30)
        lid = STATIC if rng.random() < 0.7 else DYNAMIC
        items.append(_Item(zs, draw_static, (outer - side * 0.6, zs, lid)))
    return items


def _pedestrian_spot(rng: np.random.Generator, cam: Camera, xs: Sequence[float],
                     vehicles: list[Vehicle], width: int) -> tuple[float, float]:
    """(x, z) on the sidewalk between xs[0] and xs[1]; up to six tries to find a spot that no
    nearer vehicle hides (the last try is kept regardless)."""
    for _ in range(6):
        xp = rng.uniform(xs[0], xs[1])
        zp = z_in_view(rng, cam, xp, 5, 40, width)
        if free_view(cam, xp, 0.4, zp, vehicles):
            break
    return xp, zp


def _panel(label_id: int, colours: Sequence[tuple[int, int, int]], heights: tuple[float, float],
           rng: np.random.Generator) -> tuple[float, int, np.ndarray]:
    rgb = jitter(rng, colours[rng.integers(len(colours))], 12)
    return rng.uniform(*heights), label_id, rgb


def _hedge(rng: np.random.Generator) -> tuple[float, int, np.ndarray]:
    height = rng.uniform(0.8, 1.6)
    return height, VEG, jitter(rng, (60, 100, 45), 15)


def _guard_rail(rng: np.random.Generator) -> tuple[float, int, np.ndarray]:
    return 0.8, GUARD_RAIL, jitter(rng, (170, 170, 175), 10)


# What runs along the sidewalk's outer edge, drawn with odds 0.3, 0.3, 0.15, 0.05 and 0.2
# (a gap); each entry draws (height in m, label id, colour).
_EDGE_ODDS = [0.3, 0.3, 0.15, 0.05, 0.2]
_EDGE_KINDS: tuple[Callable[[np.random.Generator], tuple[float, int, np.ndarray]] | None, ...] = (
    partial(_panel, WALL, ((150, 150, 165), (175, 165, 150), (120, 115, 110)), (0.8, 2.2)),
    partial(_panel, FENCE, ((170, 160, 140), (90, 110, 95), (140, 140, 145)), (1.0, 2.0)),
    _hedge,
    _guard_rail,
    None,
)


def _edges(rng: np.random.Generator, x: float) -> list[_Item]:
    """Walls, fences, hedges and guard rails in stretches along lateral position x."""
    items = []
    z = rng.uniform(2, 8)
    while z < 70:
        seg = rng.uniform(6, 25)
        kind = _EDGE_KINDS[rng.choice(len(_EDGE_KINDS), p=_EDGE_ODDS)]
        if kind is not None:
            height, label_id, rgb = kind(rng)
            items.append(_Item(z + seg, draw_long_plane, (x, z, z + seg, height, label_id, rgb)))
        z += seg + rng.uniform(0, 10)
    return items


def _draw_frame_edges(cv: Canvas, rng: np.random.Generator) -> None:
    """The ego vehicle's bonnet at the bottom edge, and a dark rectification border."""
    height, width = cv.label.shape
    if rng.random() < 0.4:  # the ego vehicle's bonnet at the bottom edge
        hgt = height * rng.uniform(0.04, 0.1)
        cv.ellipse((width * rng.uniform(0.45, 0.55), height + hgt * 0.2), (width * 0.8, hgt * 1.2),
                   EGO_VEHICLE, jitter(rng, (40, 45, 55), 15))
    if rng.random() < 0.3:  # a dark rectification border, 'unlabeled'
        b = int(rng.integers(1, 4))
        for sl in ((slice(None), slice(0, b)), (slice(None), slice(width - b, None))):
            cv.label[sl] = UNLABELED
            cv.color[sl] = 5
