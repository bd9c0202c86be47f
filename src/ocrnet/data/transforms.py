"""Preprocessing identical to mmseg's test pipeline for OCRNet on Cityscapes, and its inverse.

mmseg runs, per image: `LoadImageFromFile` (cv2 decode, BGR uint8), `Resize(scale=(2048, 1024),
keep_ratio=True)` (= `mmcv.imrescale`, cv2 bilinear), `PackSegInputs` (HWC -> CHW, still uint8),
then `SegDataPreProcessor` (BGR -> RGB, float32, `(x - mean) / std`, no test-time padding). The
model's logits come back at the resized shape and are resized bilinearly (align_corners=False) to
the original shape before the argmax; the metric is computed there, against the original label.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from ocrnet import defaults
from ocrnet.data import resize_argmax
from ocrnet.data.images import DEFAULT_MAX_PIXELS
from ocrnet.data.images import read_image as _read_image
from ocrnet.shapes import parse_scale as parse_scale  # the one parser lives in ocrnet.shapes

MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)  # RGB
STD: tuple[float, float, float] = (58.395, 57.12, 57.375)  # RGB
#: (max long edge, max short edge) of mmseg's test `Resize`; a no-op for 2048x1024 Cityscapes.
DEFAULT_SCALE: tuple[int, int] = defaults.SCALE

# float32 like the torch buffers of SegDataPreProcessor, so subtract-then-divide rounds the same.
_MEAN = np.asarray(MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD = np.asarray(STD, dtype=np.float32).reshape(3, 1, 1)

Scale = tuple[int, int] | float


def read_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file to BGR uint8 (H, W, 3), as `mmcv.imfrombytes(flag='color')` does.

    Size-checked from the header before decoding (`ocrnet.data.images`); every failure is a
    `BadFileError`, the family `--skip-bad` skips.
    """
    return _read_image(path, max_pixels=max_pixels, flags=cv2.IMREAD_COLOR)


def rescale_size(width: int, height: int, scale: Scale) -> tuple[int, int]:
    """New (width, height) of a keep-ratio resize, as `mmcv.rescale_size`.

    A tuple scale fits the image as large as possible within (long edge, short edge) limits,
    whatever their order; a float multiplies both sides. Sizes round half up: `int(x * s + 0.5)`.
    """
    if isinstance(scale, tuple):
        long_max, short_max = max(scale), min(scale)
        factor = min(long_max / max(height, width), short_max / min(height, width))
    else:
        if scale <= 0:
            raise ValueError(f"scale factor must be positive, got {scale}")
        factor = float(scale)
    # At least 1 pixel: a 1x30000 strip would round to 0 rows, which mmcv passes to cv2.resize
    # (an assertion error); no image of sane proportions is affected.
    return max(1, int(width * factor + 0.5)), max(1, int(height * factor + 0.5))


def resize(img: np.ndarray, scale: Scale = DEFAULT_SCALE) -> np.ndarray:
    """Keep-ratio bilinear resize (`mmcv.imrescale`, cv2 backend); returns `img` when unchanged."""
    h, w = img.shape[:2]
    new_w, new_h = rescale_size(w, h, scale)
    if (new_w, new_h) == (w, h):
        return img  # cv2.resize to the same size is an exact copy; skip it
    return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def normalize(img_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> normalized RGB float32 (3, H, W), as `SegDataPreProcessor`."""
    chw = img_bgr[:, :, ::-1].transpose(2, 0, 1).astype(np.float32, order="C")
    chw -= _MEAN
    chw /= _STD
    return chw


def preprocess(img_bgr: np.ndarray, scale: Scale = DEFAULT_SCALE) -> np.ndarray:
    """The whole test pipeline after decoding: resize, BGR -> RGB, normalize, HWC -> CHW."""
    return normalize(resize(img_bgr, scale))


# --- back to the original resolution ---------------------------------------------------------
def resize_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) or (N, C, h, w) float logits -> the same at `size` = (H, W).

    Bilinear with align_corners=False through torch, exactly mmseg's `resize` in
    `postprocess_result` (cv2's float bilinear rounds its weights differently).
    """
    import torch
    import torch.nn.functional as F

    batched = logits.ndim == 4
    t = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    t = t if batched else t[None]
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    out = t.numpy()
    return out if batched else out[0]


def logits_to_labels(logits: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """(C, h, w) logits -> (H, W) uint8 train ids: bilinear resize to `size`, then argmax.

    This is mmseg's exact path from logits at the network's input shape to the prediction
    at the original image shape, byte for byte what `resize_logits(...).argmax(0)` gives, but
    in a bounded working set: one channel is resized at a time (torch computes every output
    element of a channel from that channel alone, so a one-channel call gives the same floats)
    and folded into a running max and argmax. Peak extra memory is about 10 bytes per output
    pixel (one resized channel, the running max, the labels, a mask) instead of 4 x C + 8 (all
    C channels at full size plus an int64 argmax): 0.6 GB instead of 5 GB for 60 MP, C = 19.
    Where each side grows by a power of two (OCRNet's 1/4-resolution logits to its input
    size, a 2x downscaled image back) `ocrnet.data.resize_argmax` gives the same bytes in row
    bands, interpolating only the pixels near class boundaries.
    """
    if size is None or tuple(logits.shape[-2:]) == tuple(size):
        return logits.argmax(axis=-3).astype(np.uint8)
    size = (int(size[0]), int(size[1]))
    if logits.ndim == 4:
        return np.stack([logits_to_labels(one, size) for one in logits])
    if resize_argmax.applies(logits, size):
        return resize_argmax.resized_argmax(logits, size)
    return argmax_by_channel(logits, size)


def argmax_by_channel(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """np.argmax over resized channels, one channel at a time (ties: the first channel wins):
    `logits_to_labels` for any ratio and any values (public for the benchmarks' comparison)."""
    if logits.ndim == 4:  # (N, C, h, w): one image at a time
        return np.stack([argmax_by_channel(one, size) for one in logits])
    if logits.shape[0] == 3:  # torch resizes 3 channels on one thread with another kernel
        return resize_logits(logits, size).argmax(axis=0).astype(np.uint8)  # 3 planes only
    # np.argmax treats NaN as the maximum (the first NaN wins); resizing can make a NaN out of
    # infinities, so the NaN rule is applied only when the logits are not all finite.
    nan_aware = not bool(np.isfinite(logits).all())
    best = resize_logits(logits[0:1], size)[0]
    labels = np.zeros(size, np.uint8)
    mask = np.empty(size, bool)
    for c in range(1, logits.shape[0]):
        channel = resize_logits(logits[c:c + 1], size)[0]
        np.greater(channel, best, out=mask)
        if nan_aware:
            mask |= np.isnan(channel) & ~np.isnan(best)
        np.copyto(best, channel, where=mask)
        labels[mask] = c & 0xFF  # as argmax().astype(np.uint8) wraps
        del channel
    return labels


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H', W') label map -> (H, W) by nearest neighbour (the approximate path, no logits).

    cv2's INTER_NEAREST picks source `floor(dst * in / out)`, like torch's 'nearest'.
    """
    if labels.shape[:2] == tuple(size):
        return labels
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
