"""`ocrnet predict`: image files, folders or globs -> label PNGs (and colour masks, overlays).

Images go through eval's path exactly: the parallel loader decodes and preprocesses (keep-ratio
resize to `scale`), the engine infers at that shape, and the prediction returns to the image's
own size as `ocrnet.evaluate` brings it back (bilinear logits, then argmax). PNG encoding and
writing run on a background thread, overlapping the next inference; every file is written under
a temp name and renamed, so an interrupted run leaves complete files only.
"""

from __future__ import annotations

import difflib
import glob
import os
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.data.cityscapes import CLASSES, IMAGE_SUFFIX, PRED_SUFFIX, TRAIN_TO_LABEL, Sample
from ocrnet.data.loader import Loader
from ocrnet.data.transforms import DEFAULT_SCALE, Scale, parse_scale, read_image
from ocrnet.engines.base import RESIZE_MODES, Engine
from ocrnet.errors import DataError, OcrnetError
from ocrnet.visualize import colorize, encode_png, write_bytes_atomic
from ocrnet.visualize import overlay as blend

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: --format -> suffix of the label PNG: train ids 0..18 (255 ignored), or official labelIds.
FORMATS: dict[str, str] = {"trainids": "_labelTrainIds.png", "cityscapes": PRED_SUFFIX}
COLOR_SUFFIX = "_color.png"
OVERLAY_SUFFIX = "_overlay.png"
# Files a folder scan passes over: label maps and our own outputs are PNGs too, and predicting
# them would be wrong (e.g. a whole Cityscapes root, or an --out inside the input folder).
_NOT_IMAGES = ("_labelTrainIds.png", "_labelIds.png", "_instanceIds.png", COLOR_SUFFIX,
               OVERLAY_SUFFIX)
_CITYSCAPES_STEM = IMAGE_SUFFIX.removesuffix(".png")  # "_leftImg8bit"
_MAX_PENDING_WRITES = 4  # bounds the finished predictions held in memory while PNGs encode


@dataclass(frozen=True)
class _Job:
    """One input image and where its outputs go (without the suffix)."""

    image: Path
    out_base: Path  # out_dir / [subfolder /] name; the suffixes are appended


def find_images(inputs: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, Path]]:
    """Expand files, folders (recursive *.png/*.jpg/*.jpeg) and globs to (image, subfolder).

    `subfolder` is the image's folder relative to the folder it was found under (empty for
    files and globs), so outputs mirror the input tree. Order: inputs in turn, each sorted;
    an image named twice is kept once. An input that matches nothing is an error, not a skip.
    """
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()

    def add(path: Path, sub: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append((path, sub))

    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text)
        if path.is_file():
            add(path, Path())  # named explicitly: taken whatever its name
            continue
        if path.is_dir():
            roots = [path]
        else:
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                raise DataError(f"no file, folder or glob match for input {text!r}")
            roots = [Path(m) for m in matches if Path(m).is_dir()]
            for m in matches:
                if Path(m).is_file() and _is_image(Path(m)):
                    add(Path(m), Path())
        for root in roots:
            for file in sorted(p for p in root.rglob("*") if p.is_file() and _is_image(p)):
                add(file, file.parent.relative_to(root))
    if not found:
        shown = ", ".join(repr(os.fspath(i)) for i in inputs)
        raise DataError(f"no images ({', '.join('*' + s for s in IMAGE_SUFFIXES)}) found in "
                        f"{shown or 'no inputs'}")
    return found


def output_name(image: str | os.PathLike[str]) -> str:
    """The outputs' base name: the file stem, without Cityscapes' `_leftImg8bit`.

    `aachen_000000_000019_leftImg8bit.png` -> `aachen_000000_000019`, the key the benchmark
    matches predictions by; `street.jpg` -> `street`.
    """
    stem = Path(image).stem
    if stem.endswith(_CITYSCAPES_STEM) and len(stem) > len(_CITYSCAPES_STEM):
        return stem[: -len(_CITYSCAPES_STEM)]
    return stem


def predict(
    model_or_engine: Engine | str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    format: str = "trainids",  # shadows the builtin on purpose: the CLI option is --format
    color: bool = False,
    overlay: bool = False,
    opacity: float = 0.5,
    scale: Scale | str | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    resize: str = "logits",
    workers: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Predict every image in `inputs` and write PNGs of its original size to `out_dir`.

    `model_or_engine` is an open `Engine` (left open) or a checkpoint / ONNX / engine package
    path (opened on `device`, closed afterwards). Per image `<name>_labelTrainIds.png` (train
    ids, `format="trainids"`) or `<name>_pred_labelIds.png` (official labelIds, what the
    Cityscapes benchmark accepts, `format="cityscapes"`), plus `<name>_color.png` (palette) and
    `<name>_overlay.png` (blended at `opacity`) when asked. `scale` is the keep-ratio resize
    limit (default 2048x1024, as eval); `resize` as eval's ("logits": exact, "labels":
    nearest). Returns one dict per image: `image`, `height`, `width` and the written paths.
    """
    suffix = _check_options(format, opacity, batch_size, resize)
    scale = _parse_scale(scale)
    jobs = _plan(find_images([inputs] if isinstance(inputs, str | os.PathLike) else inputs),
                 Path(out_dir), suffix, color, overlay)
    _prepare_out_dir(Path(out_dir), {j.out_base.parent for j in jobs})

    if isinstance(model_or_engine, Engine):
        engine, owned = model_or_engine, False
    else:
        from ocrnet.engines import open_model

        engine, owned = open_model(model_or_engine, device=device), True

    by_image = {j.image: j for j in jobs}
    samples = [Sample(stem=j.out_base.name, city=j.image.parent.name, image=j.image)
               for j in jobs]
    loader = Loader(samples, batch_size=batch_size, scale=scale, workers=workers, labels=False)
    results: list[dict[str, Any]] = []
    pending: deque[Future[dict[str, Any]]] = deque()
    try:
        # On an error the pool still finishes the queued writes (complete predictions, each
        # written atomically) before the error propagates.
        with _progress_bar(len(jobs), progress) as bar, \
                ThreadPoolExecutor(1, thread_name_prefix="ocrnet-write") as writer:
            for batch in loader:
                preds = engine.labels_at(batch.images, batch.sizes, resize)
                for pred, sample in zip(preds, batch.samples, strict=True):
                    pending.append(writer.submit(_write_outputs, by_image[sample.image], pred,
                                                 format, suffix, color, overlay, opacity))
                while len(pending) > _MAX_PENDING_WRITES:
                    results.append(pending.popleft().result())
                bar.update(len(batch))
            while pending:
                results.append(pending.popleft().result())
    finally:
        if owned:
            engine.close()
    return results


# --- steps -----------------------------------------------------------------------------------
def _check_options(fmt: str, opacity: float, batch_size: int, resize: str) -> str:
    if fmt not in FORMATS:
        hint = difflib.get_close_matches(str(fmt).lower(), FORMATS, n=1)
        maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise OcrnetError(f"unknown format {fmt!r}{maybe}; valid: {', '.join(FORMATS)}")
    if not 0.0 <= opacity <= 1.0:
        raise OcrnetError(f"opacity must be within 0..1, got {opacity}")
    if batch_size < 1:
        raise OcrnetError(f"batch size must be a positive number of images, got {batch_size}")
    if resize not in RESIZE_MODES:
        raise OcrnetError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
    return FORMATS[fmt]


def _parse_scale(scale: Scale | str | None) -> Scale:
    if scale is None:
        return DEFAULT_SCALE
    if isinstance(scale, str):
        return parse_scale(scale)
    return scale


def _plan(found: list[tuple[Path, Path]], out_dir: Path, suffix: str, color: bool,
          overlay: bool) -> list[_Job]:
    """Where each image's outputs go; two images that would write one file are an error."""
    suffixes = [suffix] + [COLOR_SUFFIX] * color + [OVERLAY_SUFFIX] * overlay
    owner: dict[Path, Path] = {}
    jobs = []
    for image, sub in found:
        base = out_dir / sub / output_name(image)
        for s in suffixes:
            out = base.with_name(base.name + s)
            if out in owner:
                raise DataError(f"{owner[out]} and {image} would both write {out}; rename one "
                                "or predict them into separate --out folders")
            owner[out] = image
        jobs.append(_Job(image, base))
    return jobs


def _prepare_out_dir(out_dir: Path, folders: set[Path]) -> None:
    """Create the output folders and prove they are writable before any image is decoded."""
    for folder in sorted(folders | {out_dir}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"cannot create output folder {folder}: "
                            f"{err.strerror or err}") from None
    probe = out_dir / f".ocrnet-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise DataError(f"output folder {out_dir} is not writable: {err.strerror or err}") from None


#: What one prediction encodes to: the label PNG in either id space (the --format names),
#: the palette colour mask, or the overlay on the original image.
RENDERINGS = (*FORMATS, "color", "overlay")


def encode_prediction(pred: np.ndarray, kind: str, *, image_bgr: np.ndarray | None = None,
                      opacity: float = 0.5) -> bytes:
    """One (H, W) train-id prediction as the PNG bytes `predict` writes for it.

    `kind` is one of `RENDERINGS`: "trainids", "cityscapes" (official labelIds), "color", or
    "overlay" (blended at `opacity` over `image_bgr`, the decoded original). `ocrnet serve`
    answers with these bytes, so its responses equal predict's files byte for byte.
    """
    if kind == "trainids":
        picture = pred
    elif kind == "cityscapes":
        picture = TRAIN_TO_LABEL[pred]
    elif kind == "color":
        picture = colorize(pred)
    elif kind == "overlay":
        if image_bgr is None:
            raise ValueError("an overlay needs the original image (image_bgr)")
        picture = blend(image_bgr[:, :, ::-1], pred, opacity)
    else:
        raise ValueError(f"unknown rendering {kind!r}; valid: {', '.join(RENDERINGS)}")
    return encode_png(picture)


def prediction_summary(pred: np.ndarray, classes: Sequence[str] = CLASSES) -> dict[str, Any]:
    """Per-class pixel counts and fractions of one (H, W) train-id prediction, and its size.

    `{"height", "width", "pixels", "classes": [{"id", "name", "pixels", "fraction"}, ...]}`,
    every class listed in id order (absent ones with 0); ids without a class are not counted.
    """
    counts = np.bincount(pred.ravel(), minlength=256)
    total = int(pred.size)
    return {
        "height": int(pred.shape[0]),
        "width": int(pred.shape[1]),
        "pixels": total,
        "classes": [{"id": i, "name": name, "pixels": int(counts[i]),
                     "fraction": float(counts[i]) / total if total else 0.0}
                    for i, name in enumerate(classes)],
    }


def _write_outputs(job: _Job, pred: np.ndarray, fmt: str, suffix: str, color: bool,
                   with_overlay: bool, opacity: float) -> dict[str, Any]:
    """Encode and write one image's PNGs (runs on the writer thread)."""
    base = job.out_base
    out: dict[str, Any] = {"image": str(job.image), "height": int(pred.shape[0]),
                           "width": int(pred.shape[1])}
    out["labels"] = str(_write(base.with_name(base.name + suffix), encode_prediction(pred, fmt)))
    if color:
        out["color"] = str(_write(base.with_name(base.name + COLOR_SUFFIX),
                                  encode_prediction(pred, "color")))
    if with_overlay:
        # The loader keeps only the resized, normalized input; the overlay needs the original.
        out["overlay"] = str(_write(base.with_name(base.name + OVERLAY_SUFFIX),
                                    encode_prediction(pred, "overlay",
                                                      image_bgr=read_image(job.image),
                                                      opacity=opacity)))
    return out


def _write(path: Path, data: bytes) -> Path:
    try:
        write_bytes_atomic(path, data)
    except OSError as err:
        raise DataError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def _is_image(path: Path) -> bool:
    name = path.name
    return (path.suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")
            and not name.endswith(_NOT_IMAGES))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="predict", file=sys.stderr, dynamic_ncols=True)
