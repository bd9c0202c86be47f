"""mmseg's three test modes over any engine: whole image, sliding window, and TTA (ms+flip).

- `whole`: the image (resized to `--scale`) runs once; mmseg's `whole_inference`.
- `slide`: mmseg 1.x `EncoderDecoder.slide_inference`: tiles of `crop` every `stride`
  (`grids = max(size - crop + stride - 1, 0) // stride + 1`, the last tile flush with the
  border), logits summed per pixel and divided by the number of tiles covering it; then the
  same bilinear resize back to the original size and argmax as `whole`. The tiles of one image
  run batched (`batch` tiles per engine call). Working set: one batch of tiles plus one
  (C, H, W) float32 sum and one (H, W) count at the resized size.
  A static package runs tiles of its own input size (the crop defaults to it and must equal
  it). Where the image is smaller than the crop, mmseg runs the smaller tile as it is; a
  dynamic engine does the same, a static package pads the tile at the bottom/right with 0
  (the normalized mean colour, mmseg's test `pad_val`) and cuts the padding from the logits,
  so there, and only there, its logits differ from mmseg's.
- `aug`: mmseg's test-time augmentation as its Cityscapes config's `tta_pipeline` defines it:
  `Resize(scale_factor=r, keep_ratio=True)` of the loaded image per ratio (not the `--scale`
  resize), times {no flip, horizontal flip} with `flip`; each view's logits are un-flipped and
  resized bilinearly to the original size (`postprocess_result`), and `SegTTAModel.merge_preds`
  averages their softmax and takes the argmax. Needs an engine that takes any input size:
  a static package is refused (it cannot run the resized views), rather than silently tiled.

Confidence is the per-pixel maximum softmax probability at the original size
(`ocrnet.work.confidence`).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ocrnet import defaults
from ocrnet.errors import OcrnetError
from ocrnet.shapes import Size, parse_size
from ocrnet.work.batching import batch_labels, static_slices
from ocrnet.work.confidence import confidence_at

if TYPE_CHECKING:
    from ocrnet.engines.base import Engine

MODES = defaults.MODES


@dataclass(frozen=True)
class Mode:
    """How one image runs: `name` in `MODES`, slide's `crop`/`stride` (HEIGHTxWIDTH), aug's
    `ratios` and `flip`. `crop`/`stride` None: filled in for the engine by `for_engine`."""

    name: str = defaults.MODE
    crop: Size | None = None
    stride: Size | None = None
    ratios: tuple[float, ...] = field(default=defaults.AUG_RATIOS)
    flip: bool = False

    @classmethod
    def parse(cls, mode: str | Mode = defaults.MODE, *, crop: Size | str | None = None,
              stride: Size | str | None = None, ratios: Sequence[float] | None = None,
              flip: bool = False) -> Mode:
        """Check the options of `--mode` (one-line `OcrnetError`s naming the option)."""
        if isinstance(mode, Mode):
            return mode
        if mode not in MODES:
            hint = difflib.get_close_matches(str(mode), MODES, n=1)
            maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise OcrnetError(f"unknown --mode {mode!r}{maybe}; valid: {', '.join(MODES)}")
        if mode != "slide" and (crop is not None or stride is not None):
            raise OcrnetError(f"--crop and --stride apply to --mode slide, not --mode {mode}")
        if mode != "aug" and (ratios is not None or flip):
            raise OcrnetError(f"--ratios and --flip apply to --mode aug, not --mode {mode}")
        crop = None if crop is None else parse_size(crop, what="--crop")
        stride = None if stride is None else parse_size(stride, what="--stride")
        if crop is not None and stride is not None:
            _check_stride(crop, stride)
        return cls(mode, crop, stride, _check_ratios(ratios), bool(flip))

    def for_engine(self, engine: Engine) -> Mode:
        """This mode with slide's crop and stride filled in, checked against a static input."""
        static = static_size(engine)
        if self.name == "aug" and static is not None:
            raise OcrnetError(
                f"--mode aug needs a model that runs any input size, and {engine.display_name} "
                f"is a static package (input {static}): the views are the image resized by each "
                "ratio; build it with --dynamic, or use --mode slide, which runs on it")
        if self.name != "slide":
            return self
        crop = self.crop or static or Size(*defaults.SLIDE_CROP)
        if static is not None and crop != static:
            larger = crop.height > static.height or crop.width > static.width
            raise OcrnetError(
                f"--crop {crop} is {'larger than' if larger else 'not'} the static input "
                f"{static} of {engine.display_name}: a static package runs tiles of its own "
                "input size; leave --crop out, or build it with --dynamic")
        stride = self.stride or Size(max(1, crop.height * 2 // 3), max(1, crop.width * 2 // 3))
        _check_stride(crop, stride)
        return replace(self, crop=crop, stride=stride)

    def scale(self, engine: Engine, scale: tuple[int, int] | float | None) -> Any:
        """The keep-ratio resize before inference: whole keeps `Engine.default_scale` (a static
        package's own size); slide exists to run any size, so mmseg's 2048x1024; aug has none."""
        if self.name == "aug":
            if scale is not None:
                raise OcrnetError("--scale does not apply to --mode aug: its views are the "
                                  "loaded image resized by each of --ratios")
            return None
        if self.name == "slide":
            return scale if scale is not None else defaults.SCALE
        return engine.default_scale(scale)

    def to_dict(self, default: bool = True) -> dict[str, Any]:
        """What every JSON records: `{"mode": ..., ...}` with only this mode's own options
        (`default=False`: nothing for whole, where older records have no key)."""
        if not default and self.name == "whole":
            return {}
        out: dict[str, Any] = {"mode": self.name}
        if self.name == "slide":
            out["crop"] = None if self.crop is None else str(self.crop)
            out["stride"] = None if self.stride is None else str(self.stride)
        elif self.name == "aug":
            out["ratios"] = list(self.ratios)
            out["flip"] = self.flip
        return out


#: The default mode: mmseg's whole-image test (what the OCRNet Cityscapes config runs).
WHOLE = Mode()


def _check_stride(crop: Size, stride: Size) -> None:
    if stride.height > crop.height or stride.width > crop.width:
        raise OcrnetError(f"--stride {stride} is larger than --crop {crop}: the tiles would "
                          "leave pixels no tile covers; use a stride <= the crop")


def _check_ratios(ratios: Sequence[float] | None) -> tuple[float, ...]:
    if ratios is None:
        return tuple(defaults.AUG_RATIOS)
    out = tuple(float(r) for r in ratios)
    if not out or not all(math.isfinite(r) and r > 0 for r in out):
        raise OcrnetError(f"--ratios must be one or more positive numbers, got {list(ratios)}")
    return out


def static_size(engine: Engine) -> Size | None:
    """HxW of a static package's input; None where height or width is dynamic."""
    shape = engine.metadata.get("input_shape") or []
    if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]):
        return Size(int(shape[2]), int(shape[3]))
    return None


def static_batch(engine: Engine) -> int | None:
    """N of a static package's input; None where the batch is dynamic."""
    shape = engine.metadata.get("input_shape") or []
    return int(shape[0]) if len(shape) == 4 and isinstance(shape[0], int) else None


# --- slide -------------------------------------------------------------------------------------
def tile_grid(height: int, width: int, crop: Size, stride: Size) -> list[tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) of every tile, in mmseg's order (rows, then columns)."""
    h_grids = max(height - crop.height + stride.height - 1, 0) // stride.height + 1
    w_grids = max(width - crop.width + stride.width - 1, 0) // stride.width + 1
    tiles = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y2 = min(h_idx * stride.height + crop.height, height)
            x2 = min(w_idx * stride.width + crop.width, width)
            tiles.append((max(y2 - crop.height, 0), y2, max(x2 - crop.width, 0), x2))
    return tiles


def slide_logits(engine: Engine, image: np.ndarray, crop: Size, stride: Size, *,
                 batch: int = 1) -> np.ndarray:
    """(C, H, W) float32 logits of one normalized (3, H, W) image by mmseg's sliding window.

    `batch` tiles go through the engine per call (a static package's own batch instead);
    the per-pixel sum is divided by the count only at the end, as mmseg does.
    """
    height, width = image.shape[-2:]
    tiles = tile_grid(height, width, crop, stride)
    pad_to, per_call = static_size(engine), static_batch(engine) or max(1, int(batch))
    total: np.ndarray | None = None
    count = np.zeros((height, width), np.float32)
    for start in range(0, len(tiles), per_call):
        chunk = tiles[start:start + per_call]
        logits = _run_tiles(engine, image, chunk, pad_to, per_call)
        if total is None:
            total = np.zeros((logits.shape[1], height, width), np.float32)
        for (y1, y2, x1, x2), tile in zip(chunk, logits, strict=False):
            total[:, y1:y2, x1:x2] += tile[:, :y2 - y1, :x2 - x1]
            count[y1:y2, x1:x2] += 1
    assert total is not None  # at least one tile: the grid has >= 1 row and column
    total /= count
    return total


def _run_tiles(engine: Engine, image: np.ndarray, chunk: list[tuple[int, int, int, int]],
               pad_to: Size | None, per_call: int) -> np.ndarray:
    """Logits of `chunk`'s tiles in one engine call, padded to a static input where needed."""
    y1, y2, x1, x2 = chunk[0]
    th, tw = (pad_to.height, pad_to.width) if pad_to else (y2 - y1, x2 - x1)
    # A static batch runs exactly N: a short last chunk is filled with blank tiles.
    n = per_call if static_batch(engine) else len(chunk)
    tiles = np.zeros((n, 3, th, tw), np.float32)
    for i, (a, b, c, d) in enumerate(chunk):
        tiles[i, :, :b - a, :d - c] = image[:, a:b, c:d]
    return _logits(engine, engine.infer(tiles, return_logits=True).logits, "--mode slide's sums")


# --- aug ---------------------------------------------------------------------------------------
def aug_size(height: int, width: int, ratio: float) -> tuple[int, int]:
    """(h, w) of `Resize(scale_factor=ratio, keep_ratio=True)`: mmcv scales (w, h) by the
    ratio, rounding half up, then `imrescale`s to fit that as a (long, short) limit."""
    from ocrnet.data.transforms import rescale_size

    limit = (int(width * ratio + 0.5), int(height * ratio + 0.5))
    new_w, new_h = rescale_size(width, height, limit)
    return new_h, new_w


def aug_probs(engine: Engine, image_bgr: np.ndarray, ratios: Sequence[float],
              flip: bool) -> np.ndarray:
    """(C, H, W) float32 mean softmax over the views of one BGR uint8 image (`merge_preds`).

    Views are taken one ratio at a time (both flips in one engine call), so the working set
    is one view's logits plus the (C, H, W) sum at the original size, as in mmseg.
    """
    from ocrnet.data.transforms import normalize, resize

    height, width = image_bgr.shape[:2]
    total: np.ndarray | None = None
    views = 0
    for ratio in ratios:
        h, w = aug_size(height, width, ratio)
        x = normalize(resize(image_bgr, (w, h)))
        batch = np.stack([x, x[:, :, ::-1]]) if flip else x[None]
        logits = _logits(engine, engine.infer(batch, return_logits=True).logits,
                         "--mode aug's averages")
        for i, view in enumerate(logits):
            view = view[:, :, ::-1] if i == 1 else view  # un-flip before the resize back
            probs = softmax_at(view, (height, width))
            if total is None:
                total = probs
            else:
                total += probs
            views += 1
    assert total is not None  # _check_ratios: at least one ratio
    total /= views
    return total


def softmax_at(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Softmax over classes of (C, h, w) logits resized (mmseg's bilinear) to `size`."""
    import torch

    from ocrnet.data.transforms import resize_logits

    t = torch.from_numpy(resize_logits(np.ascontiguousarray(logits), size))
    return torch.softmax(t, dim=0).numpy()


# --- one image, end to end ---------------------------------------------------------------------
@dataclass
class ModePrediction:
    """One image's (H, W) uint8 train ids at its original size, and its confidence if asked."""

    labels: np.ndarray
    confidence: np.ndarray | None = None


def predict_image(engine: Engine, image_bgr: np.ndarray, mode: Mode, *,
                  scale: tuple[int, int] | float | None = None, batch: int = 1,
                  resize: str = defaults.RESIZE, confidence: bool = False) -> ModePrediction:
    """Labels (and max-softmax confidence) of one decoded BGR image under `mode`.

    `mode` is checked for `engine` (`Mode.for_engine`), `scale` the keep-ratio limit that
    `Mode.scale` chose. The image is preprocessed as the loader does (`preprocess`), then
    `batch_predictions`: the step every kernel runs, so a video frame and an image file agree.
    """
    from ocrnet.data.transforms import preprocess

    size = (int(image_bgr.shape[0]), int(image_bgr.shape[1]))
    if mode.name == "aug":  # its views are resized from the loaded image, not the prepared one
        return aug_prediction(engine, image_bgr, mode, confidence)
    x = preprocess(image_bgr, scale if scale is not None else defaults.SCALE)
    return batch_predictions(engine, x[None], [size], mode, batch=batch, resize=resize,
                             confidence=confidence)[0]


def batch_predictions(engine: Engine, images: np.ndarray, sizes: Sequence[tuple[int, int]],
                      mode: Mode, *, original: Callable[[int], np.ndarray] | None = None,
                      batch: int = 1, resize: str = defaults.RESIZE,
                      confidence: bool = False) -> list[ModePrediction]:
    """A prepared batch (N, 3, h, w) -> one prediction per image at its original size.

    Whole without confidence is `batch_labels` itself (mmseg's whole-image path); with
    confidence the same labels and the logits' max softmax. Slide runs each image's tiles
    (`batch` per engine call); aug needs `original(i)`, image i as decoded (BGR uint8).
    """
    if mode.name == "whole" and not confidence:
        return [ModePrediction(lb) for lb in batch_labels(engine, images, sizes, resize)]
    out = []
    if mode.name == "whole":
        # A static package runs its own N per call: slices padded as batch_labels pads them.
        for part, at, real in static_slices(engine, images, sizes):
            result = engine.infer(part, return_logits=True)
            logits = _logits(engine, result.logits, "confidence maps")
            for i, size in enumerate(at[:real]):
                same = tuple(part.shape[-2:]) == tuple(size)
                labels = result.labels[i] if same else _back(logits[i], size, resize)
                out.append(ModePrediction(labels, confidence_at(logits[i], size)))
        return out
    for i, size in enumerate(sizes):
        if mode.name == "aug":
            if original is None:
                raise ValueError("--mode aug needs the decoded images (original=)")
            out.append(aug_prediction(engine, original(i), mode, confidence))
            continue
        logits = image_logits(engine, images[i], mode, batch=batch)
        out.append(ModePrediction(_back(logits, size, resize),
                                  confidence_at(logits, size) if confidence else None))
    return out


def aug_prediction(engine: Engine, image_bgr: np.ndarray, mode: Mode,
                   confidence: bool) -> ModePrediction:
    """aug's labels (argmax of the mean softmax) and confidence (its maximum)."""
    probs = aug_probs(engine, image_bgr, mode.ratios, mode.flip)
    return ModePrediction(probs.argmax(axis=0).astype(np.uint8),
                          probs.max(axis=0) if confidence else None)


def _back(logits: np.ndarray, size: tuple[int, int], resize: str) -> np.ndarray:
    """Labels at the original `size`: `Engine.labels_at`'s two ways back."""
    from ocrnet.data.transforms import logits_to_labels, resize_labels

    if resize == "labels":
        return resize_labels(logits.argmax(axis=0).astype(np.uint8), size)
    return logits_to_labels(logits, size)


class NoLogitsError(OcrnetError):
    """The engine gives labels only (a package built with `--outputs labels`)."""


def gives_logits(engine: Engine) -> bool:
    """False for a package whose manifest lists no logits output (`build --outputs labels`);
    a `lowres` package gives them (resized from its output on the host)."""
    outputs = engine.metadata.get("outputs")
    return not isinstance(outputs, (list, tuple)) or "logits" in outputs or "lowres" in outputs


def _logits(engine: Engine, logits: np.ndarray | None, need: str) -> np.ndarray:
    if logits is None:
        raise NoLogitsError(f"engine {engine.display_name} returns no logits, which {need} "
                          "need; use --mode whole without --confidence")
    return np.asarray(logits, np.float32)


def image_logits(engine: Engine, image: np.ndarray, mode: Mode, *, batch: int = 1) -> np.ndarray:
    """(C, h, w) logits of one normalized (3, h, w) image in whole or slide mode."""
    if mode.name == "slide":
        if mode.crop is None or mode.stride is None:
            raise ValueError("slide needs crop and stride: call Mode.for_engine(engine) first")
        return slide_logits(engine, image, mode.crop, mode.stride, batch=batch)
    if mode.name != "whole":
        raise ValueError(f"image_logits runs whole or slide, not {mode.name!r}")
    return _logits(engine, engine.infer(image[None], return_logits=True).logits,
                   "confidence maps")[0]
