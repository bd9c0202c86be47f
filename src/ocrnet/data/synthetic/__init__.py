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
byte-identical files (pinned by tests/test_synthetic_golden.py).

Modules, bottom up: `labels` (the label ids painted), `geometry` (camera, canvas, boxes),
`actors` (people, two-wheelers, the vehicle table), `layout` (street cross-section, placement),
`scenery` (sky, ground, facades, trees, walls, poles and signs), `render` (texture, light,
camera artefacts), `scene` (`generate_scene`, step by step), `writer` (`write_dataset`).
"""

from __future__ import annotations

from ocrnet.data.synthetic.labels import (
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    DYNAMIC,
    EGO_VEHICLE,
    FENCE,
    GUARD_RAIL,
    LIGHT,
    MOTORCYCLE,
    PERSON,
    POLE,
    RIDER,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    STATIC,
    TERRAIN,
    TRAIN,
    TRUCK,
    UNLABELED,
    VEG,
    WALL,
)
from ocrnet.data.synthetic.scene import GENERATOR_VERSION, generate_scene
from ocrnet.data.synthetic.writer import CITIES, SynthResult, parse_size, write_dataset

__all__ = [
    "BICYCLE",
    "BUILDING",
    "BUS",
    "CAR",
    "CITIES",
    "DYNAMIC",
    "EGO_VEHICLE",
    "FENCE",
    "GENERATOR_VERSION",
    "GUARD_RAIL",
    "LIGHT",
    "MOTORCYCLE",
    "PERSON",
    "POLE",
    "RIDER",
    "ROAD",
    "SIDEWALK",
    "SIGN",
    "SKY",
    "STATIC",
    "TERRAIN",
    "TRAIN",
    "TRUCK",
    "UNLABELED",
    "VEG",
    "WALL",
    "SynthResult",
    "generate_scene",
    "parse_size",
    "write_dataset",
]
