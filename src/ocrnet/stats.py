"""Confidence for mIoU differences: the paired bootstrap over images, exact and cheap.

mIoU is not a mean over images (it is IoU per class of *summed* confusion matrices), so its
uncertainty cannot come from a per-image standard error. The bootstrap resamples images with
replacement; a resample's mIoU is exact from the weighted sum of the per-image (19, 19) int64
matrices, so nothing but those matrices is kept (never logits). Pairing (the same resampled
images for the model and its reference) cancels the variation between images that both share,
which is most of it: the interval is about the difference, not about either score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ocrnet.errors import OcrnetError

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


def miou_of(matrices: np.ndarray) -> np.ndarray:
    """mIoU (fraction) of each summed (..., C, C) confusion matrix `[label, pred]`.

    Classes absent from both labels and predictions are left out of the mean (NaN IoU), as in
    `ocrnet.metrics`; a matrix with no class at all gives NaN.
    """
    m = np.asarray(matrices, dtype=np.float64)
    inter = np.diagonal(m, axis1=-2, axis2=-1)
    union = m.sum(-1) + m.sum(-2) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)
        counted = (union > 0).sum(-1)
        return np.where(counted > 0, np.nansum(iou, -1) / np.maximum(counted, 1), np.nan)


@dataclass(frozen=True)
class DeltaInterval:
    """ΔmIoU (model - reference) in mIoU points, with its paired bootstrap interval."""

    delta: float
    low: float
    high: float
    level: float
    resamples: int
    images: int

    def below(self, max_drop: float) -> bool:
        """True if the interval's lower bound is below -max_drop (the gate trips)."""
        return self.low < -max_drop

    def to_json(self) -> dict[str, Any]:
        return {"delta_mIoU": round(self.delta, 4), "ci_low": round(self.low, 4),
                "ci_high": round(self.high, 4), "level": self.level,
                "resamples": self.resamples, "images": self.images,
                "method": "paired bootstrap over images (summed confusion matrices)"}

    def __str__(self) -> str:
        return (f"{self.delta:+.3f} [{self.low:+.3f}, {self.high:+.3f}] "
                f"({self.level:.0%} CI, {self.images} images)")


def paired_bootstrap(model: np.ndarray, reference: np.ndarray, *,
                     resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL,
                     seed: int = 0) -> DeltaInterval:
    """Percentile interval of mIoU(model) - mIoU(reference) over images resampled in pairs.

    `model` and `reference` are (N, C, C) int64 stacks of per-image confusion matrices of the
    same N images in the same order. Each resample draws N image indices with replacement
    (one multinomial count vector per resample), sums both stacks with those counts and
    takes the difference of the two mIoUs; the point estimate is the difference on all images.
    """
    a, b = np.asarray(model), np.asarray(reference)
    if a.shape != b.shape or a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise OcrnetError(f"paired bootstrap needs two (N, C, C) stacks of the same images; "
                          f"got {a.shape} and {b.shape}")
    if not 0 < level < 1:
        raise OcrnetError(f"confidence level must be within (0, 1), got {level}")
    n = a.shape[0]
    if n == 0:
        raise OcrnetError("paired bootstrap needs at least one image")
    rng = np.random.default_rng(seed)
    flat_a = a.reshape(n, -1).astype(np.float64)
    flat_b = b.reshape(n, -1).astype(np.float64)
    deltas = np.empty(resamples)
    shape = a.shape[1:]
    step = max(1, min(resamples, (1 << 24) // max(n, 1)))  # bounded (step, N) count matrices
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=k).astype(np.float64)
        sum_a = (counts @ flat_a).reshape(k, *shape)
        sum_b = (counts @ flat_b).reshape(k, *shape)
        deltas[start:start + k] = miou_of(sum_a) - miou_of(sum_b)
    point = float(miou_of(a.sum(0)) - miou_of(b.sum(0)))
    finite = deltas[np.isfinite(deltas)]
    tail = (1 - level) / 2 * 100
    low, high = (np.percentile(finite, [tail, 100 - tail]) if finite.size
                 else (math.nan, math.nan))
    return DeltaInterval(100 * point, 100 * float(low), 100 * float(high), level, resamples, n)
