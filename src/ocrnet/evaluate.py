"""`ocrnet eval`: a model (any engine) or saved predictions, scored on Cityscapes.

The model path is mmseg's test loop: preprocess (`ocrnet.data.transforms`), infer at the resized
shape, bring the prediction back to the label's original shape, accumulate one confusion matrix.
With `resize="logits"` (the default, mmseg-exact) the logits are resized bilinearly and then
argmax'ed; `resize="labels"` resizes the engine's labels by nearest neighbour instead (cheaper,
for engines that output labels only). When no resize is needed (Cityscapes at 2048x1024) both
are the same and the engine's labels are used directly.
"""

from __future__ import annotations

import bisect
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocrnet.data.cityscapes import (
    CLASSES,
    PRED_SUFFIX,
    TRAIN_TO_LABEL,
    Sample,
    discover,
    label_ids_to_train_ids,
    read_label,
)
from ocrnet.data.loader import BadFileError, Loader, SkippedFile, bounded_map
from ocrnet.data.transforms import DEFAULT_SCALE, Scale
from ocrnet.engines.base import RESIZE_MODES, Engine
from ocrnet.errors import DataError, OcrnetError
from ocrnet.metrics import ConfusionMatrix, MetricResults


@dataclass
class EvalResult:
    """The confusion matrix of a run and everything derived from it."""

    confusion: ConfusionMatrix
    num_images: int
    model: str | None
    data_root: str
    split: str
    skipped: list[SkippedFile] | None = None  # None unless skip_bad was asked for
    extra: dict[str, Any] = field(default_factory=dict)  # scale, resize, predictions, seconds

    @property
    def metrics(self) -> MetricResults:
        return self.confusion.results(CLASSES)

    @property
    def miou(self) -> float:
        """mIoU as a fraction (NaN if nothing was labelled)."""
        return self.metrics.miou

    def to_json(self) -> dict[str, Any]:
        """mIoU, aAcc, mAcc and per-class IoU/Acc in percent (null for NaN), plus the run."""
        out: dict[str, Any] = self.metrics.to_json()
        out.update(num_images=self.num_images, model=self.model, data_root=self.data_root,
                   split=self.split, **self.extra)
        if self.skipped is not None:
            out["skipped"] = [s.to_json() for s in self.skipped]
        return out

    def table(self) -> str:
        return self.metrics.table()


def evaluate(
    model: Engine | str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    split: str = "val",
    limit: int | None = None,
    batch_size: int = 1,
    *,
    scale: Scale | None = None,
    device: str = "cpu",
    save_predictions: str | os.PathLike[str] | None = None,
    skip_bad: bool = False,
    resize: str = "logits",
    workers: int | None = None,
    prefetch: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """Score a model on a Cityscapes split.

    `model` is an open `Engine` (left open) or a checkpoint / engine package path (opened on
    `device` with `ocrnet.engines.open_model`, closed afterwards). `scale` is the keep-ratio
    resize limit (default 2048x1024, mmseg's). `save_predictions` writes
    `<stem>_pred_labelIds.png` there (official labelIds). With `skip_bad` unreadable or
    inconsistent samples are skipped and listed in the result instead of raising `DataError`.
    """
    if resize not in RESIZE_MODES:
        raise OcrnetError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
    if batch_size < 1:
        raise OcrnetError(f"batch size must be a positive number of images, got {batch_size}")
    samples = _limited(discover(data_root, split), limit)
    scale = DEFAULT_SCALE if scale is None else scale
    out_dir = _prediction_dir(save_predictions)

    if isinstance(model, Engine):
        engine, owned = model, False
        name = engine.display_name
    else:
        from ocrnet.engines import open_model

        engine, owned, name = open_model(model, device=device), True, str(model)

    confusion = ConfusionMatrix(len(CLASSES))
    loader = Loader(samples, batch_size=batch_size, scale=scale, workers=workers,
                    prefetch=prefetch, skip_bad=skip_bad)
    start = time.perf_counter()
    num_images = seen_skipped = 0
    try:
        with _progress(len(samples), progress) as bar:
            for batch in loader:
                preds = engine.labels_at(batch.images, batch.sizes, resize)
                for pred, label, sample in zip(preds, batch.labels, batch.samples, strict=True):
                    confusion.update(pred, label)
                    if out_dir is not None:
                        _write_png(out_dir / f"{sample.stem}{PRED_SUFFIX}", TRAIN_TO_LABEL[pred])
                num_images += len(batch)
                # Skipped samples count as done, so the bar and its ETA still reach the end.
                _advance(bar, len(batch) + len(loader.skipped) - seen_skipped, confusion)
                seen_skipped = len(loader.skipped)
            if len(loader.skipped) > seen_skipped:  # bad samples after the last batch
                _advance(bar, len(loader.skipped) - seen_skipped, confusion)
    finally:
        if owned:
            engine.close()
    _check_any(num_images, loader.skipped)
    return EvalResult(
        confusion, num_images, name, str(data_root), split,
        skipped=list(loader.skipped) if skip_bad else None,
        extra={"scale": list(scale) if isinstance(scale, tuple) else scale, "resize": resize,
               "seconds": round(time.perf_counter() - start, 3)},
    )


# --- scoring saved predictions ---------------------------------------------------------------
def evaluate_predictions(
    predictions: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    split: str = "val",
    limit: int | None = None,
    *,
    skip_bad: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """Score saved labelIds PNGs against a split, matched as cityscapesscripts matches them.

    Every ground truth `<city>_<seq>_<frame>` needs exactly one `<city>_<seq>_<frame>*.png`
    anywhere under `predictions`. Predicted ids are official labelIds; ids of classes outside
    the 19 evaluated count as misses, ids that are not Cityscapes labels are an error.
    """
    pred_root = Path(predictions)
    if not pred_root.is_dir():
        raise DataError(f"predictions folder {pred_root} does not exist; pass the folder holding "
                        "<city>_<seq>_<frame>*.png labelIds predictions")
    samples = _limited(discover(data_root, split), limit)
    index = _PredictionIndex(pred_root)
    skipped: list[SkippedFile] = []
    pairs: list[tuple[Sample, Path]] = []
    for sample in samples:
        try:
            pairs.append((sample, index.find(sample)))
        except BadFileError as err:
            if not skip_bad:
                raise
            skipped.append(SkippedFile(str(err.path), err.reason))

    confusion = ConfusionMatrix(len(CLASSES))
    start = time.perf_counter()
    num_images = 0
    n_workers = workers or min(4, os.cpu_count() or 1)
    results = bounded_map(_load_pair, pairs, workers=n_workers, prefetch=2 * n_workers)
    with _progress(len(samples), progress) as bar:
        _advance(bar, len(skipped), confusion)
        for future in results:
            try:
                pred, label = future.result()
            except BadFileError as err:
                if not skip_bad:
                    raise
                skipped.append(SkippedFile(str(err.path), err.reason))
                _advance(bar, 1, confusion)
                continue
            confusion.update(pred, label)
            num_images += 1
            _advance(bar, 1, confusion)
    _check_any(num_images, skipped)
    return EvalResult(
        confusion, num_images, None, str(data_root), split,
        skipped=skipped if skip_bad else None,
        extra={"predictions": str(pred_root),
               "seconds": round(time.perf_counter() - start, 3)},
    )


class _PredictionIndex:
    """Every *.png under a folder, searchable by filename prefix (cityscapesscripts' rule)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries = sorted((p.name, p) for p in root.rglob("*.png") if p.is_file())
        self.names = [name for name, _ in self.entries]

    def find(self, sample: Sample) -> Path:
        lo = bisect.bisect_left(self.names, sample.stem)
        hits = []
        for name, path in self.entries[lo:]:
            if not name.startswith(sample.stem):
                break
            hits.append(path)
        if not hits:
            raise BadFileError(sample.image, f"no prediction {sample.stem}*.png under {self.root} "
                               f"for image {sample.image}; predict it or pass --limit/--skip-bad")
        if len(hits) > 1:
            raise BadFileError(hits[0], f"several predictions match {sample.stem}*.png: "
                               f"{', '.join(map(str, hits[:3]))}; keep one per image")
        return hits[0]


def _load_pair(pair: tuple[Sample, Path]) -> tuple[np.ndarray, np.ndarray]:
    sample, pred_path = pair
    label_path = sample.label or sample.image  # discover(labels_required=True) sets .label
    try:
        label = read_label(label_path, sample.label_format or "trainIds")
    except DataError as err:
        raise BadFileError(label_path, str(err)) from None
    try:
        data = pred_path.read_bytes()
    except OSError as err:
        raise BadFileError(pred_path, f"cannot read {pred_path}: {err.strerror or err}") from None
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if raw is None or raw.ndim != 2 or raw.dtype != np.uint8:
        what = "cannot be decoded" if raw is None else f"is {raw.dtype} {raw.shape}"
        raise BadFileError(pred_path, f"prediction {pred_path} {what}; expected a single-channel "
                           "8-bit labelIds PNG")
    if raw.shape != label.shape:
        raise BadFileError(
            pred_path, f"prediction {pred_path} is {raw.shape[1]}x{raw.shape[0]} but label "
            f"{label_path} is {label.shape[1]}x{label.shape[0]} (WxH); they must match")
    try:
        pred = label_ids_to_train_ids(raw, source=pred_path)
    except DataError as err:
        raise BadFileError(pred_path, str(err)) from None
    return pred, label


# --- helpers ---------------------------------------------------------------------------------
def _limited(samples: list[Sample], limit: int | None) -> list[Sample]:
    if limit is None:
        return samples
    if limit < 1:
        raise OcrnetError(f"limit must be a positive number of images, got {limit}")
    return samples[:limit]


def _prediction_dir(path: str | os.PathLike[str] | None) -> Path | None:
    if path is None:
        return None
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create predictions folder {out}: {err.strerror or err}") from None
    return out


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise DataError(f"cannot encode prediction {path}")
    try:
        path.write_bytes(buf.tobytes())
    except OSError as err:
        raise DataError(f"cannot write {path}: {err.strerror or err}") from None


def _check_any(num_images: int, skipped: list[SkippedFile]) -> None:
    if num_images == 0:
        first = f"; first: {skipped[0].reason}" if skipped else ""
        raise DataError(f"no image could be evaluated ({len(skipped)} skipped){first}")


class _NoBar:
    """Stands in for tqdm when progress is off."""

    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        pass


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield _NoBar()
        return
    from tqdm import tqdm

    # tqdm's own rate and ETA are images/s and time left; the postfix adds the running mIoU.
    with tqdm(total=total, unit="img", desc="eval", file=sys.stderr, dynamic_ncols=True) as bar:
        yield bar


def _advance(bar: Any, n: int, confusion: ConfusionMatrix) -> None:
    miou = confusion.results().miou
    bar.set_postfix_str("mIoU " + ("-" if math.isnan(miou) else f"{miou * 100:.2f}"),
                        refresh=False)
    bar.update(n)
