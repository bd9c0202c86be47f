"""What the models are fed: smooth random images with a photo's value statistics."""

from __future__ import annotations

import numpy as np


def synthetic_batch(batch: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(batch, 3, H, W) float32: smooth random images in 0..255 with fine texture, normalised.

    Low-frequency blobs (bilinearly upsampled noise) plus pixel noise give the value range and
    spatial statistics of a photo, so activations, and with them int8 saturation and any
    data-dependent kernel, behave as on real frames (never zeros: some kernels short-cut them).
    """
    from ocrnet.data.transforms import MEAN, STD

    coarse = rng.uniform(0, 255, (batch, 3, height // 16 + 2, width // 16 + 2)).astype(np.float32)
    img = _upsample(_upsample(coarse, height, axis=2), width, axis=3)
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    np.clip(img, 0, 255, out=img)
    img -= np.asarray(MEAN, np.float32).reshape(1, 3, 1, 1)
    img /= np.asarray(STD, np.float32).reshape(1, 3, 1, 1)
    return img


def _upsample(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear interpolation of `a` along `axis` to `size` samples (align_corners=True)."""
    n = a.shape[axis]
    pos = np.linspace(0, n - 1, size, dtype=np.float32)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    shape = [1] * a.ndim
    shape[axis] = size
    w = (pos - i0).astype(a.dtype).reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - w) + np.take(a, i1, axis=axis) * w
