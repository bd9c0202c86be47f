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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocrnet import defaults
from ocrnet.data.cityscapes import (
    CLASSES,
    PRED_SUFFIX,
    TRAIN_TO_LABEL,
    Sample,
    discover,
    label_ids_to_train_ids,
    read_label,
)
from ocrnet.data.images import DEFAULT_MAX_PIXELS
from ocrnet.data.images import read_image as _read_image_file
from ocrnet.data.loader import BadFileError, Batch, Loader, SkippedFile, bounded_map
from ocrnet.data.transforms import Scale
from ocrnet.engines.base import RESIZE_MODES, Engine
from ocrnet.errors import DataError, OcrnetError, check_int
from ocrnet.fileio import atomic_write_bytes, prepare_folder
from ocrnet.metrics import ConfusionMatrix, MetricResults, image_confusion
from ocrnet.progress import progress_bar


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
    # Per-image (N, C, C) int64 confusion matrices and the images' stems, in the same order:
    # what a paired bootstrap against another model resamples (`ocrnet.stats`). Small
    # (2.9 kB an image), never logits.
    per_image: np.ndarray | None = None
    image_ids: list[str] | None = None
    # Things that make the numbers mean less than they seem (labels with nothing labelled,
    # predictions in the wrong id space): printed under the table and kept in the JSON.
    warnings: list[str] = field(default_factory=list)

    def delta_vs(self, reference: EvalResult, **opts: Any) -> Any:
        """ΔmIoU vs `reference` (same images, paired by stem) with its paired bootstrap
        interval: an `ocrnet.stats.DeltaInterval` in mIoU points."""
        from ocrnet.stats import paired_bootstrap

        mine, theirs = _paired_stacks(self, reference)
        return paired_bootstrap(mine, theirs, **opts)

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
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    def table(self) -> str:
        """The metrics table, followed by any warnings."""
        return "\n".join([self.metrics.table(), *(f"warning: {w}" for w in self.warnings)])


def evaluate(
    model: Engine | str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    split: str = defaults.SPLIT,
    limit: int | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    *,
    scale: Scale | None = None,
    device: str = defaults.DEVICE,
    save_predictions: str | os.PathLike[str] | None = None,
    skip_bad: bool = False,
    resize: str = defaults.RESIZE,
    workers: int | None = None,
    prefetch: int | None = None,
    progress: bool = True,
    trust_checkpoint: bool = False,
    trust_package: bool = False,
    threads: int | None = None,
    ray: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> EvalResult:
    """Score a model on a Cityscapes split.

    `model` is an open `Engine` (left open) or a checkpoint / engine package path (opened on
    `device` with `ocrnet.engines.open_model`, closed afterwards; `trust_checkpoint` /
    `trust_package` as there). `scale` is the keep-ratio resize limit (default: a static
    package's own input size, else 2048x1024, mmseg's). `save_predictions` writes
    `<stem>_pred_labelIds.png` there (official labelIds). With `skip_bad` unreadable or
    inconsistent samples are skipped and listed in the result instead of raising `DataError`.
    `threads`: the engine's inference threads. `ray`: run on a Ray cluster (`"local"`, `"auto"`
    or an address; `workers` is then the number of engine actors, `threads` each one's
    threads), see `ocrnet.jobs.evaluate`; the metrics are identical to an in-process run.
    `max_pixels`: an image or label whose header claims more pixels is refused before decoding
    (a `BadFileError`, which `skip_bad` skips).
    """
    if ray is not None:
        from ocrnet.jobs.evaluate import evaluate_on_ray

        return evaluate_on_ray(
            model, data_root, split, limit, batch_size, address=ray, scale=scale,
            device=device, save_predictions=save_predictions, skip_bad=skip_bad, resize=resize,
            workers=workers, threads=threads, progress=progress,
            trust_checkpoint=trust_checkpoint, trust_package=trust_package,
            max_pixels=max_pixels)
    if resize not in RESIZE_MODES:
        raise OcrnetError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
    if batch_size < 1:
        raise OcrnetError(f"batch size must be a positive number of images, got {batch_size}")
    samples = _limited(discover(data_root, split), limit)
    out_dir = _prediction_dir(save_predictions)

    if isinstance(model, Engine):
        engine, owned = model, False
        name = engine.display_name
    else:
        from ocrnet.engines import open_model

        engine = open_model(model, device=device, trust_checkpoint=trust_checkpoint,
                            trust_package=trust_package,
                            **({"threads": threads} if threads else {}))
        owned, name = True, str(model)
    try:
        _check_classes(engine, name)
    except OcrnetError:
        if owned:
            engine.close()
        raise
    scale_source = "given" if scale is not None else (
        "package input" if engine.native_scale else "mmseg default")
    scale = engine.default_scale(scale)

    confusion = ConfusionMatrix(len(CLASSES))
    loader = Loader(samples, batch_size=batch_size, scale=scale, workers=workers,
                    prefetch=prefetch, skip_bad=skip_bad, max_pixels=max_pixels)
    start = time.perf_counter()
    num_images = seen_skipped = 0
    per_image: list[np.ndarray] = []
    ids: list[str] = []
    try:
        with progress_bar(len(samples), progress, "eval") as bar:
            for batch in loader:
                for image_cm, sample in zip(score_batch(engine, batch, resize, out_dir),
                                            batch.samples, strict=True):
                    confusion.merge(image_cm)
                    per_image.append(image_cm.matrix)
                    ids.append(sample.stem)
                num_images += len(batch)
                # Skipped samples count as done, so the bar and its ETA still reach the end.
                _advance(bar, len(batch) + len(loader.skipped) - seen_skipped, confusion)
                seen_skipped = len(loader.skipped)
            if len(loader.skipped) > seen_skipped:  # bad samples after the last batch
                _advance(bar, len(loader.skipped) - seen_skipped, confusion)
    finally:
        if owned:
            engine.close()
    return model_result(confusion, num_images, name, data_root, split,
                        skipped=loader.skipped, skip_bad=skip_bad, scale=scale,
                        scale_source=scale_source, resize=resize,
                        seconds=time.perf_counter() - start, per_image=per_image,
                        image_ids=ids, empty_labels=loader.empty_labels)


def _paired_stacks(a: EvalResult, b: EvalResult) -> tuple[np.ndarray, np.ndarray]:
    """Both runs' per-image matrices over the images they share, in one order."""
    if a.per_image is None or b.per_image is None or a.image_ids is None \
            or b.image_ids is None:
        raise OcrnetError("a paired comparison needs per-image confusion matrices from both "
                          "runs (evaluate a model in this process, not saved predictions)")
    where = {stem: i for i, stem in enumerate(b.image_ids)}
    shared = [(i, where[stem]) for i, stem in enumerate(a.image_ids) if stem in where]
    if len(shared) != len(a.image_ids) or len(shared) != len(b.image_ids):
        raise OcrnetError(f"the two runs scored different images ({len(a.image_ids)} vs "
                          f"{len(b.image_ids)}, {len(shared)} shared); evaluate both on the "
                          "same split, --limit and data")
    ia, ib = zip(*shared, strict=True)
    return a.per_image[list(ia)], b.per_image[list(ib)]


def score_batch(engine: Engine, batch: Batch, resize: str,
                out_dir: Path | None = None) -> list[ConfusionMatrix]:
    """Infer one loader batch and score each image on its own (`image_confusion`), writing
    its labelIds PNG to `out_dir` if given: the step in-process eval and every eval actor of
    `eval --ray` run, so their summed matrices are identical."""
    preds = engine.labels_at(batch.images, batch.sizes, resize)
    out = []
    for pred, label, sample in zip(preds, batch.labels, batch.samples, strict=True):
        out.append(image_confusion(pred, label, len(CLASSES)))
        if out_dir is not None:
            _write_png(out_dir / f"{sample.stem}{PRED_SUFFIX}", TRAIN_TO_LABEL[pred])
    return out


def model_result(confusion: ConfusionMatrix, num_images: int, model: str | None,
                 data_root: str | os.PathLike[str], split: str, *,
                 skipped: list[SkippedFile], skip_bad: bool, scale: Scale, scale_source: str,
                 resize: str, seconds: float, per_image: list[np.ndarray],
                 image_ids: list[str], empty_labels: list[str]) -> EvalResult:
    """The `EvalResult` of a model run (in-process or on Ray): one place builds it, so both
    write the same JSON. `per_image`: each scored image's matrix, in sample order, with its
    stem in `image_ids`; `empty_labels`: labels holding only ignored pixels. No image scored
    at all is a `DataError`."""
    _check_any(num_images, skipped)
    result = EvalResult(
        confusion, num_images, model, str(data_root), split,
        skipped=list(skipped) if skip_bad else None,
        extra={"scale": list(scale) if isinstance(scale, tuple) else scale,
               "scale_source": scale_source, "resize": resize, "seconds": round(seconds, 3)},
    )
    result.per_image = np.stack(per_image) if per_image else None
    result.image_ids = list(image_ids)
    result.warnings += _empty_label_warnings(list(empty_labels), num_images)
    return result


# --- scoring saved predictions ---------------------------------------------------------------
def evaluate_predictions(
    predictions: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    split: str = defaults.SPLIT,
    limit: int | None = None,
    *,
    skip_bad: bool = False,
    workers: int | None = None,
    progress: bool = True,
    ray: str | None = None,
) -> EvalResult:
    """Score saved labelIds PNGs against a split, matched as cityscapesscripts matches them.

    Every ground truth `<city>_<seq>_<frame>` needs exactly one `<city>_<seq>_<frame>*.png`
    anywhere under `predictions`. Predicted ids are official labelIds; ids of classes outside
    the 19 evaluated count as misses, ids that are not Cityscapes labels are an error.
    `ray`: score on a Ray cluster (`workers` tasks at a time), see `ocrnet.jobs.evaluate`.
    """
    if ray is not None:
        from ocrnet.jobs.evaluate import evaluate_predictions_on_ray

        return evaluate_predictions_on_ray(predictions, data_root, split, limit, address=ray,
                                           skip_bad=skip_bad, workers=workers,
                                           progress=progress)
    if workers is not None:
        check_int(workers, "workers")
    samples = _limited(discover(data_root, split), limit)
    pairs, skipped = pair_predictions(samples, predictions, skip_bad=skip_bad)
    empty: list[str] = []

    confusion = ConfusionMatrix(len(CLASSES))
    start = time.perf_counter()
    num_images = 0
    n_workers = workers or min(4, os.cpu_count() or 1)
    results = bounded_map(score_pair, pairs, workers=n_workers, prefetch=2 * n_workers)
    with progress_bar(len(samples), progress, "eval") as bar:
        _advance(bar, len(skipped), confusion)
        for (sample, _), future in zip(pairs, results, strict=True):
            try:
                image_cm = future.result()
            except BadFileError as err:
                if not skip_bad:
                    raise
                skipped.append(SkippedFile(str(err.path), err.reason))
                _advance(bar, 1, confusion)
                continue
            confusion.merge(image_cm)
            if not image_cm.matrix.any():
                empty.append(str(sample.label))
            num_images += 1
            _advance(bar, 1, confusion)
    return predictions_result(confusion, num_images, predictions, data_root, split,
                              skipped=skipped, skip_bad=skip_bad,
                              seconds=time.perf_counter() - start, pairs=pairs,
                              empty_labels=empty)


def pair_predictions(samples: list[Sample], predictions: str | os.PathLike[str], *,
                     skip_bad: bool) -> tuple[list[tuple[Sample, Path]], list[SkippedFile]]:
    """Each sample with its one prediction file under `predictions`; samples without one (or
    with several) are skipped with `skip_bad`, else a `BadFileError`."""
    pred_root = Path(predictions)
    if not pred_root.is_dir():
        raise DataError(f"predictions folder {pred_root} does not exist; pass the folder holding "
                        "<city>_<seq>_<frame>*.png labelIds predictions")
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
    return pairs, skipped


def score_pair(pair: tuple[Sample, Path]) -> ConfusionMatrix:
    """One saved prediction scored against its label (`image_confusion`); `BadFileError`
    names the file at fault. In-process and `eval --predictions --ray` both run this."""
    pred, label = _load_pair(pair)
    return image_confusion(pred, label, len(CLASSES))


def predictions_result(confusion: ConfusionMatrix, num_images: int,
                       predictions: str | os.PathLike[str], data_root: str | os.PathLike[str],
                       split: str, *, skipped: list[SkippedFile], skip_bad: bool,
                       seconds: float, pairs: list[tuple[Sample, Path]],
                       empty_labels: list[str]) -> EvalResult:
    """The `EvalResult` of scoring saved predictions (in-process or on Ray): `pairs` as
    `pair_predictions` made them, `empty_labels` the labels that scored no pixel."""
    _check_any(num_images, skipped)
    result = EvalResult(
        confusion, num_images, None, str(data_root), split,
        skipped=list(skipped) if skip_bad else None,
        extra={"predictions": str(Path(predictions)), "seconds": round(seconds, 3)},
    )
    result.warnings += _train_ids_warning([path for _, path in pairs[:_SNIFF]])
    result.warnings += _empty_label_warnings(list(empty_labels), num_images)
    return result


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
    # Through data/images like every image: size-checked from the header, errors skippable.
    raw = _read_image_file(pred_path, flags=cv2.IMREAD_UNCHANGED)
    if raw.ndim != 2 or raw.dtype != np.uint8:
        what = f"is {raw.dtype} {raw.shape}"
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
    # Checked before the first image, so a bad --save-predictions fails in a second.
    return None if path is None else prepare_folder(path)


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise DataError(f"cannot encode prediction {path}")
    atomic_write_bytes(path, buf.tobytes())  # whole or not at all; OutputError names it


def _check_classes(engine: Engine, name: str) -> None:
    """Refuse a model whose classes are not Cityscapes' 19: its ids mean other classes, and
    scoring them against these labels would print a number that means nothing."""
    meta = engine.metadata
    block = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    n = block.get("num_classes", meta.get("num_classes"))
    if isinstance(n, int) and not isinstance(n, bool) and n != len(CLASSES):
        raise OcrnetError(f"model {name} predicts {n} classes, but the dataset is scored on "
                          f"the {len(CLASSES)} Cityscapes classes; its ids would be scored as "
                          "other classes, so it is not evaluated")


# Ids 1..6 are void labelIds (ego vehicle .. ground): no trainId maps to them, so a labelIds
# prediction never holds them, while trainIds 1..6 (sidewalk .. traffic light) are common.
_VOID_LABEL_IDS = np.zeros(256, dtype=bool)
_VOID_LABEL_IDS[1:7] = True
_SNIFF = 3


def _train_ids_warning(paths: list[Path]) -> list[str]:
    """A warning when saved predictions look like trainIds under labelIds names."""
    suspicious = []
    for path in paths:
        try:
            raw = _read_image_file(path, flags=cv2.IMREAD_UNCHANGED)
        except DataError:
            continue  # scoring reports it
        if raw.ndim == 2 and raw.dtype == np.uint8 and raw.size and \
                _VOID_LABEL_IDS[raw].mean() > 0.05:
            suspicious.append(path)
    if not suspicious:
        return []
    return [f"{len(suspicious)} of the first {len(paths)} predictions (e.g. {suspicious[0]}) "
            "hold many void labelIds 1..6 that no model predicts: they look like trainIds saved "
            "under labelIds names; save them with `ocrnet predict --format cityscapes`"]


def _empty_label_warnings(empty: list[str], num_images: int) -> list[str]:
    if not empty:
        return []
    shown = ", ".join(empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
    what = "every scored label" if len(empty) == num_images else f"{len(empty)} label(s)"
    return [f"{what} hold(s) only ignored pixels (255), so they add nothing to the metrics: "
            f"{shown}"]


def _check_any(num_images: int, skipped: list[SkippedFile]) -> None:
    if num_images == 0:
        first = f"; first: {skipped[0].reason}" if skipped else ""
        raise DataError(f"no image could be evaluated ({len(skipped)} skipped){first}")


def _advance(bar: Any, n: int, confusion: ConfusionMatrix) -> None:
    """tqdm's own rate and ETA are images/s and time left; the postfix adds the running mIoU."""
    miou = confusion.results().miou
    bar.set_postfix_str("mIoU " + ("-" if math.isnan(miou) else f"{miou * 100:.2f}"),
                        refresh=False)
    bar.update(n)
