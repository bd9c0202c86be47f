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
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet import defaults
from ocrnet.data.cityscapes import CLASSES, IMAGE_SUFFIX, PRED_SUFFIX, TRAIN_TO_LABEL, Sample
from ocrnet.data.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from ocrnet.data.loader import Loader
from ocrnet.data.transforms import Scale, parse_scale, read_image
from ocrnet.engines import opened_engine
from ocrnet.engines.base import RESIZE_MODES, Engine
from ocrnet.errors import DataError, OcrnetError, OutputError
from ocrnet.fileio import atomic_write_bytes, prepare_folder
from ocrnet.progress import progress_bar
from ocrnet.visualize import colorize, encode_png
from ocrnet.visualize import overlay as blend

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
        kinds = ", ".join("*" + s for s in sorted(IMAGE_SUFFIXES))
        raise DataError(f"no images ({kinds}) found in {shown or 'no inputs'}")
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
    format: str = defaults.PREDICT_FORMAT,  # shadows the builtin: the CLI option is --format
    color: bool = False,
    overlay: bool = False,
    opacity: float = defaults.OPACITY,
    scale: Scale | str | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    device: str = defaults.DEVICE,
    resize: str = defaults.RESIZE,
    workers: int | None = None,
    progress: bool = True,
    trust_checkpoint: bool = False,
    trust_package: bool = False,
    threads: int | None = None,
    skip_bad: bool = False,
    ray: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[dict[str, Any]]:
    """Predict every image in `inputs` and write PNGs of its original size to `out_dir`.

    `model_or_engine` is an open `Engine` (left open) or a checkpoint / ONNX / engine package
    path (opened on `device`, closed afterwards). Per image `<name>_labelTrainIds.png` (train
    ids, `format="trainids"`) or `<name>_pred_labelIds.png` (official labelIds, what the
    Cityscapes benchmark accepts, `format="cityscapes"`), plus `<name>_color.png` (palette) and
    `<name>_overlay.png` (blended at `opacity`) when asked. `scale` is the keep-ratio resize
    limit (default: a static package's own input size, else 2048x1024, as eval; `trust_*` as
    `ocrnet.engines.open_model`); `resize` as eval's ("logits": exact, "labels":
    nearest). Returns one dict per image: `image`, `height`, `width` and the written paths;
    with `skip_bad` an unreadable image is `{"image": path, "skipped": reason}` instead of an
    error. `threads`: the engine's inference threads. `ray`: run on a Ray cluster (`"local"`,
    `"auto"` or an address; `workers` is then the number of engine actors, `threads` each
    one's threads), see `ocrnet.jobs.predict` (it also resumes into an `out_dir` in progress).
    `max_pixels`: an image whose header claims more pixels is refused before decoding.
    """
    if ray is not None:
        from ocrnet.jobs.predict import predict_on_ray

        return predict_on_ray(
            model_or_engine, inputs, out_dir, address=ray, format=format, color=color,
            overlay=overlay, opacity=opacity, scale=scale, batch_size=batch_size, device=device,
            resize=resize, workers=workers, threads=threads, skip_bad=skip_bad,
            progress=progress, trust_checkpoint=trust_checkpoint, trust_package=trust_package,
            max_pixels=max_pixels,
        ).images
    jobs = plan_jobs(inputs, out_dir, format=format, color=color, overlay=overlay,
                     opacity=opacity, batch_size=batch_size, resize=resize)
    scale = _parse_scale(scale)
    with opened_engine(model_or_engine, device=device, trust_checkpoint=trust_checkpoint,
                       trust_package=trust_package, threads=threads) as (engine, _):
        results = predict_jobs(engine, jobs, format=format, color=color, overlay=overlay,
                               opacity=opacity, scale=engine.default_scale(scale),
                               batch_size=batch_size, resize=resize, workers=workers,
                               skip_bad=skip_bad, max_pixels=max_pixels)
        return _gather(results, len(jobs), progress)


def _gather(results: Iterable[dict[str, Any]], total: int, progress: bool) -> list[dict[str, Any]]:
    """Every result of a `predict_jobs` run, under a progress bar of `total` images."""
    gathered: list[dict[str, Any]] = []
    with progress_bar(total, progress, "predict") as bar:
        for result in results:
            gathered.append(result)
            bar.update(1)
    return gathered


def plan_jobs(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    format: str = defaults.PREDICT_FORMAT,
    color: bool = False,
    overlay: bool = False,
    opacity: float = defaults.OPACITY,
    batch_size: int = defaults.BATCH_SIZE,
    resize: str = defaults.RESIZE,
) -> list[_Job]:
    """Check the options, find the images and where each one's outputs go; create `out_dir`
    (and its subfolders) and prove it writable before any image is decoded."""
    suffix = _check_options(format, opacity, batch_size, resize)
    jobs = _plan(find_images([inputs] if isinstance(inputs, str | os.PathLike) else inputs),
                 Path(out_dir), suffix, color, overlay)
    _prepare_out_dir(Path(out_dir), {j.out_base.parent for j in jobs})
    return jobs


def predict_jobs(
    engine: Engine,
    jobs: list[_Job],
    *,
    format: str,
    color: bool,
    overlay: bool,
    opacity: float,
    scale: Scale,
    batch_size: int,
    resize: str,
    workers: int | None = None,
    skip_bad: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[dict[str, Any]]:
    """Decode, infer and write `jobs` in order, yielding each image's result as its PNGs land.

    The one loop behind in-process `predict` and every actor of `predict --ray`, so both write
    the same bytes. With `skip_bad` an unreadable image yields `{"image", "skipped"}` instead.
    """
    suffix = FORMATS[format]
    by_image = {j.image: j for j in jobs}
    samples = [Sample(stem=j.out_base.name, city=j.image.parent.name, image=j.image)
               for j in jobs]
    loader = Loader(samples, batch_size=batch_size, scale=scale, workers=workers, labels=False,
                    skip_bad=skip_bad, max_pixels=max_pixels)
    pending: deque[Future[dict[str, Any]]] = deque()
    reported = 0
    # On an error the pool still finishes the queued writes (complete predictions, each
    # written atomically) before the error propagates.
    with ThreadPoolExecutor(1, thread_name_prefix="ocrnet-write") as writer:
        for batch in loader:
            reported = _queue_skipped(loader, reported, pending)
            preds = engine.labels_at(batch.images, batch.sizes, resize)
            for pred, sample in zip(preds, batch.samples, strict=True):
                pending.append(writer.submit(_write_outputs, by_image[sample.image], pred,
                                             format, suffix, color, overlay, opacity))
            while len(pending) > _MAX_PENDING_WRITES:
                yield pending.popleft().result()
        _queue_skipped(loader, reported, pending)
        while pending:
            yield pending.popleft().result()


def _queue_skipped(loader: Loader, reported: int, pending: deque[Future[dict[str, Any]]]) -> int:
    """Queue results for the images `loader` skipped since `reported`, in their place."""
    for skipped in loader.skipped[reported:]:
        done: Future[dict[str, Any]] = Future()
        done.set_result({"image": skipped.path, "skipped": skipped.reason})
        pending.append(done)
    return len(loader.skipped)


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


def _parse_scale(scale: Scale | str | None) -> Scale | None:
    if scale is None:
        return None
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
        prepare_folder(folder)  # OutputError naming the folder (a path under a file, ...)
    probe = out_dir / f".ocrnet-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputError(f"output folder {out_dir} is not writable: {err.strerror or err}") \
            from None


#: What one prediction encodes to: the label PNG in either id space (the --format names),
#: the palette colour mask, or the overlay on the original image.
RENDERINGS = (*FORMATS, "color", "overlay")


def encode_prediction(pred: np.ndarray, kind: str, *, image_bgr: np.ndarray | None = None,
                      opacity: float = defaults.OPACITY) -> bytes:
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
    return atomic_write_bytes(path, data)  # OutputError names the file; no partial PNG


def _is_image(path: Path) -> bool:
    name = path.name
    return (path.suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")
            and not name.endswith(_NOT_IMAGES))


