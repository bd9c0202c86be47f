"""Everything decided before any work: the items, where their outputs go, the checked options.

A `PredictPlan` holds the images and each one's output base name, the options that shape an
output byte, and the run record (`ocrnet.work.record`) a resumed run compares. An `EvalPlan`
holds the samples (image + label pairs) and where their labelIds PNGs go, if anywhere. Both are
plain, picklable data: the Ray executor ships them to its actors as they are.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ocrnet import defaults
from ocrnet.data.cityscapes import IMAGE_SUFFIX, Sample
from ocrnet.data.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from ocrnet.data.transforms import Scale, parse_scale
from ocrnet.engines.base import RESIZE_MODES
from ocrnet.errors import DataError, OcrnetError, OutputError, check_int
from ocrnet.fileio import prepare_folder
from ocrnet.work.confidence import CONFIDENCE_SUFFIX
from ocrnet.work.formats import (
    COLOR_SUFFIX,
    FORMATS,
    OVERLAY_SUFFIX,
    check_choice,
    check_opacity,
)
from ocrnet.work.modes import WHOLE, Mode

# Files a folder scan passes over: label maps and our own outputs are PNGs too, and predicting
# them would be wrong (e.g. a whole Cityscapes root, or an --out inside the input folder).
NOT_IMAGES = ("_labelTrainIds.png", "_labelIds.png", "_instanceIds.png", COLOR_SUFFIX,
              OVERLAY_SUFFIX, CONFIDENCE_SUFFIX)
CITYSCAPES_STEM = IMAGE_SUFFIX.removesuffix(".png")  # "_leftImg8bit"


@dataclass(frozen=True)
class PredictItem:
    """One input image and where its outputs go (without the suffix)."""

    image: Path
    out_base: Path  # out_dir / [subfolder /] name; the suffixes are appended

    def outputs(self, suffixes: Iterable[str]) -> list[Path]:
        return [self.out_base.with_name(self.out_base.name + s) for s in suffixes]


@dataclass(frozen=True)
class PredictOptions:
    """The options that decide a prediction's bytes (and the batch size, which does not)."""

    format: str = defaults.PREDICT_FORMAT
    color: bool = False
    overlay: bool = False
    opacity: float = defaults.OPACITY
    scale: Scale | None = None  # None: the engine's default (`Engine.default_scale`)
    resize: str = defaults.RESIZE
    batch_size: int = defaults.BATCH_SIZE
    max_pixels: int = DEFAULT_MAX_PIXELS
    mode: Mode = WHOLE  # mmseg's test mode (ocrnet.work.modes)
    confidence: bool = False  # also the max-softmax PNG

    @property
    def suffixes(self) -> list[str]:
        """Every file one image writes, label PNG first."""
        return [FORMATS[self.format]] + [COLOR_SUFFIX] * self.color \
            + [OVERLAY_SUFFIX] * self.overlay + [CONFIDENCE_SUFFIX] * self.confidence


@dataclass
class PredictPlan:
    out_dir: Path
    items: list[PredictItem]
    options: PredictOptions
    skip_bad: bool = False


@dataclass(frozen=True)
class EvalOptions:
    scale: Scale | None = None
    resize: str = defaults.RESIZE
    batch_size: int = defaults.BATCH_SIZE
    max_pixels: int = DEFAULT_MAX_PIXELS
    save_predictions: Path | None = None  # labelIds PNGs go here when given
    mode: Mode = WHOLE
    calibration: bool = False  # confidence per pixel into `ocrnet.calibration` bins


@dataclass
class EvalPlan:
    samples: list[Sample]
    options: EvalOptions = field(default_factory=EvalOptions)
    skip_bad: bool = False


# --- options ---------------------------------------------------------------------------------
def check_run_options(resize: str, batch_size: int) -> None:
    """Refuse a bad `resize` or `batch_size` before any work (predict and eval, any executor)."""
    if resize not in RESIZE_MODES:
        raise OcrnetError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
    if batch_size < 1:
        raise OcrnetError(f"batch size must be a positive number of images, got {batch_size}")


def check_streams(streams: int | None, ray: str | None) -> None:
    """`streams` (images in flight through one engine) is an in-process choice: Ray's actors
    each run one request, and more actors (`workers`) are the way to more in flight there."""
    if streams is None:
        return
    check_int(streams, "streams")
    if ray is not None and streams > 1:
        raise OcrnetError(f"--streams {streams} applies to runs in this process; with --ray each "
                          "actor runs one request at a time (--workers sets how many actors)")


def predict_options(*, format: str, color: bool, overlay: bool, opacity: float,
                    scale: Scale | str | None, resize: str, batch_size: int,
                    max_pixels: int, mode: Mode = WHOLE,
                    confidence: bool = False) -> PredictOptions:
    """The checked options of a predict run (one line naming the first bad one)."""
    check_choice(format, list(FORMATS), "format")
    check_opacity(opacity)
    check_run_options(resize, batch_size)
    if isinstance(scale, str):
        scale = parse_scale(scale)
    return PredictOptions(format, bool(color), bool(overlay), opacity, scale, resize,
                          batch_size, max_pixels, mode, bool(confidence))


def limited(samples: list[Sample], limit: int | None) -> list[Sample]:
    """The first `limit` samples (all when None); a limit below 1 is a user error."""
    if limit is None:
        return samples
    if limit < 1:
        raise OcrnetError(f"limit must be a positive number of images, got {limit}")
    return samples[:limit]


def prediction_dir(path: str | os.PathLike[str] | None) -> Path | None:
    """`--save-predictions`, created now, so a bad one fails in a second, not after the run."""
    return None if path is None else prepare_folder(path)


# --- predict's items -------------------------------------------------------------------------
def plan_predict(inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
                 out_dir: str | os.PathLike[str], options: PredictOptions, *,
                 skip_bad: bool = False) -> PredictPlan:
    """Find the images and where each one's outputs go; create `out_dir` (and its subfolders)
    and prove it writable before any image is decoded."""
    found = find_images([inputs] if isinstance(inputs, str | os.PathLike) else inputs)
    out = Path(out_dir)
    items = _items(found, out, options.suffixes)
    _prepare_out_dir(out, {i.out_base.parent for i in items})
    return PredictPlan(out, items, options, skip_bad)


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
                if Path(m).is_file() and is_image(Path(m)):
                    add(Path(m), Path())
        for root in roots:
            for file in sorted(p for p in root.rglob("*") if p.is_file() and is_image(p)):
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
    if stem.endswith(CITYSCAPES_STEM) and len(stem) > len(CITYSCAPES_STEM):
        return stem[: -len(CITYSCAPES_STEM)]
    return stem


def is_image(path: Path) -> bool:
    """An image a folder scan takes: an image suffix, not hidden, not a label or our output."""
    name = path.name
    return (path.suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")
            and not name.endswith(NOT_IMAGES))


def _items(found: list[tuple[Path, Path]], out_dir: Path,
           suffixes: list[str]) -> list[PredictItem]:
    """Where each image's outputs go; two images that would write one file are an error."""
    owner: dict[Path, Path] = {}
    items = []
    for image, sub in found:
        item = PredictItem(image, out_dir / sub / output_name(image))
        for out in item.outputs(suffixes):
            if out in owner:
                raise DataError(f"{owner[out]} and {image} would both write {out}; rename one "
                                "or predict them into separate --out folders")
            owner[out] = image
        items.append(item)
    return items


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
