"""Camera, canvas and boxes: how a shape in world metres becomes the same pixels in both images.

World coordinates: x right, y up (metres above the road), z forward from the camera.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Camera:
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


class Canvas:
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


def jitter(rng: np.random.Generator, rgb: Sequence[float], amount: float = 12) -> np.ndarray:
    """`rgb` moved by up to +-amount per channel: no two objects of a class look the same."""
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def shade(rgb: Sequence[float], k: float) -> np.ndarray:
    """`rgb` darkened (k < 1) or lightened (k > 1), clipped to 0..255."""
    return np.clip(np.asarray(rgb, np.float32) * k, 0, 255)


def ground_quad(cam: Camera, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    """Image quad of the road-level rectangle x0..x1 by z0..z1."""
    return cam.quad([(x0, 0, z0), (x1, 0, z0), (x1, 0, z1), (x0, 0, z1)])


def facade_quads(cam: Camera, x: float, y0: np.ndarray, y1: np.ndarray, z0: np.ndarray,
                 z1: np.ndarray) -> np.ndarray:
    """(N, 4, 2) image quads of rectangles on the vertical plane at lateral position x."""
    corners = [(y0, z0), (y0, z1), (y1, z1), (y1, z0)]
    return np.stack([np.stack(cam.project(x, yy, zz), -1) for yy, zz in corners], 1)


@dataclass(frozen=True, eq=False)
class BoxFaces:
    """An axis-aligned box as the camera sees it: its silhouette and its visible faces.

    `rear` (the face towards the camera) and `side` (the face towards the road's centre line,
    absent when the box straddles x = 0) return the image quad of a sub-rectangle given in
    fractions of the face (u along its width or depth, v up its height), so details such as
    windows are placed the same way on boxes of any size.
    """

    cam: Camera
    x0: float
    x1: float
    y0: float
    y1: float
    z0: float
    z1: float
    hull: np.ndarray  # convex hull of the projected corners, (K, 2)
    side_x: float | None  # x of the visible side face
    top: np.ndarray | None  # the roof's quad, when the box is below the camera

    def rear(self, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
        x0, x1, y0, y1 = self.x0, self.x1, self.y0, self.y1
        return self.cam.quad([(x0 + u * (x1 - x0), y0 + v * (y1 - y0), self.z0)
                              for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))])

    def side(self, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
        if self.side_x is None:
            raise ValueError("this box shows no side face (it straddles the camera's axis)")
        sx, y0, y1, z0, z1 = self.side_x, self.y0, self.y1, self.z0, self.z1
        return self.cam.quad([
            (sx, y0 + v0 * (y1 - y0), z0 + u0 * (z1 - z0)),
            (sx, y0 + v0 * (y1 - y0), z0 + u1 * (z1 - z0)),
            (sx, y0 + v1 * (y1 - y0), z0 + u1 * (z1 - z0)),
            (sx, y0 + v1 * (y1 - y0), z0 + u0 * (z1 - z0))])


def box_faces(cam: Camera, x0: float, x1: float, y0: float, y1: float, z0: float,
              z1: float) -> BoxFaces:
    """Silhouette (convex hull) of an axis-aligned box plus the faces the camera sees."""
    corners = [(x, y, z) for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)]
    hull = cv2.convexHull(cam.quad(corners).astype(np.float32)).reshape(-1, 2)
    side_x = x0 if x0 > 0 else (x1 if x1 < 0 else None)
    top = (cam.quad([(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)])
           if y1 < cam.hc else None)
    return BoxFaces(cam, x0, x1, y0, y1, z0, z1, hull, side_x, top)


def draw_box(cv: Canvas, cam: Camera, box: tuple[float, ...], label_id: int,
             rgb: np.ndarray) -> BoxFaces:
    """Fill a box's silhouette with `label_id`, its side darker and its roof lighter."""
    faces = box_faces(cam, *box)
    cv.fill(faces.hull, label_id, rgb)
    if faces.side_x is not None:
        cv.paint(faces.side(0, 1, 0, 1), shade(rgb, 0.78))
    if faces.top is not None:
        cv.paint(faces.top, shade(rgb, 1.12))
    cv.paint(faces.rear(0, 1, 0, 1), rgb)
    return faces
