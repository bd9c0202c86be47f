"""From the flat-colour canvas to a camera-like picture: per-class texture, light, blur, noise
and JPEG artefacts. Labels are never touched, so pixels and labels still agree exactly."""

from __future__ import annotations

import cv2
import numpy as np

from ocrnet.data.synthetic import labels as ids
from ocrnet.data.synthetic.geometry import Canvas

# Per-label-id texture amplitudes (luminance, in 0..255 units): fine grain, mid-scale blotches
# (leaves), large-scale stains. Distinct texture statistics per class keep classes identifiable
# from local appearance, which a CNN trained for an hour on CPU needs.
_AMP = np.zeros((256, 3), np.float32)
for _lid, _amp in {
    ids.ROAD: (5, 3, 10), ids.SIDEWALK: (7, 2, 6), ids.BUILDING: (5, 2, 8), ids.WALL: (9, 3, 6),
    ids.FENCE: (6, 2, 3), ids.POLE: (3, 0, 3), ids.LIGHT: (3, 0, 0), ids.SIGN: (2, 0, 0),
    ids.VEG: (12, 26, 10), ids.TERRAIN: (14, 8, 12), ids.SKY: (1, 0, 2), ids.PERSON: (4, 2, 0),
    ids.RIDER: (4, 2, 0), ids.CAR: (3, 0, 4), ids.TRUCK: (4, 0, 4), ids.BUS: (3, 0, 3),
    ids.TRAIN: (3, 0, 3), ids.MOTORCYCLE: (4, 1, 0), ids.BICYCLE: (4, 1, 0), ids.STATIC: (6, 2, 4),
    ids.DYNAMIC: (6, 2, 4), ids.GUARD_RAIL: (3, 0, 2), ids.EGO_VEHICLE: (2, 0, 6),
    ids.UNLABELED: (2, 0, 0),
}.items():
    _AMP[_lid] = _amp
_GROUND = np.zeros(256, bool)
_GROUND[[ids.ROAD, ids.SIDEWALK, ids.TERRAIN]] = True


def render(cv: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Texture, light and degrade the colour canvas into a camera-like RGB uint8 image."""
    return _camera(_textured(cv, rng), rng)


def _textured(cv: Canvas, rng: np.random.Generator) -> np.ndarray:
    """The canvas with per-class texture, fence mesh, wall courses, clouds and a cast shadow."""
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
    gain = np.where((lab == ids.FENCE) & mesh, np.float32(0.55), np.float32(1.0))
    gain[(lab == ids.WALL) & ((yy % max(3, h // 40)) == 0)] = 0.8
    # Clouds: soft white blobs where the sky shows.
    cloud = cv2.resize(rng.standard_normal((4, 8), dtype=np.float32), (w, h),
                       interpolation=cv2.INTER_CUBIC) * rng.uniform(0.3, 0.8) + low * 0.2
    cloud = np.clip(cloud, 0, 1) * (lab == ids.SKY)
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
    img[..., 1] += np.where(lab == ids.VEG, 10 * mid, 0)  # leaves vary in hue, not just brightness
    return img


def _camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-image lighting (contrast, brightness, colour temperature), blur, noise, JPEG."""
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
