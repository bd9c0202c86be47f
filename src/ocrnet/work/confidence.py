"""Per-pixel confidence: the maximum softmax probability of a prediction at the original size.

`confidence_at` resizes the logits back (mmseg's bilinear, as the labels are) one class at a
time into a running maximum and sum of exponentials, so the working set is a few (H, W) planes
instead of the (C, H, W) logits at the original size. `confidence_png` stores a map in 8 bits:
`round(p * 255)`, half up, so a value v means p within v/255 +- 1/510; since p >= 1/C (1/19 for
Cityscapes) the smallest value is 13.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: The confidence PNG beside an image's labels (`predict --confidence`).
CONFIDENCE_SUFFIX = "_confidence.png"


def confidence_at(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 max softmax probability of (C, h, w) logits resized to `size`.

    Streams the classes: each channel is resized on its own (the same bilinear numbers as the
    whole tensor) into a running max and a running sum of exponentials, so the working set is
    four (H, W) planes, not the (C, H, W) logits at the original size.
    """
    peak: np.ndarray | None = None
    acc: np.ndarray | None = None
    for plane in _resized_planes(logits, size):
        if peak is None:
            peak, acc = plane.copy(), np.ones_like(plane)
            continue
        new_peak = np.maximum(peak, plane)
        acc *= np.exp(peak - new_peak)
        acc += np.exp(plane - new_peak)
        peak = new_peak
    if acc is None:
        raise ValueError("confidence needs logits with at least one class")
    return np.reciprocal(acc, out=acc)  # max_c softmax = exp(m - m) / sum_c exp(l_c - m)


def _resized_planes(logits: np.ndarray, size: tuple[int, int]) -> Iterator[np.ndarray]:
    from ocrnet.data.transforms import resize_logits

    for channel in logits:
        yield resize_logits(np.ascontiguousarray(channel[None]), size)[0]


def confidence_png(confidence: np.ndarray) -> np.ndarray:
    """(H, W) uint8 of probabilities in 0..1: round(p * 255), half up (the documented scale)."""
    scaled = np.clip(confidence, 0.0, 1.0) * 255.0 + 0.5
    return scaled.astype(np.uint8)
