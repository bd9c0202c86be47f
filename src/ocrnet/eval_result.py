"""`EvalResult`: the confusion matrix of an eval run, its table, its JSON and its paired
bootstrap against another run; `model_result` builds it for a model run (in-process or on Ray).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ocrnet.data.cityscapes import CLASSES
from ocrnet.data.loader import SkippedFile
from ocrnet.data.transforms import Scale
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


def model_result(confusion: ConfusionMatrix, num_images: int, model: str | None,
                 data_root: str | os.PathLike[str], split: str, *,
                 skipped: list[SkippedFile], skip_bad: bool, scale: Scale, scale_source: str,
                 resize: str, seconds: float, per_image: list[np.ndarray],
                 image_ids: list[str], empty_labels: list[str]) -> EvalResult:
    """The `EvalResult` of a model run (in-process or on Ray): one place builds it, so both
    write the same JSON. `per_image`: each scored image's matrix, in sample order, with its
    stem in `image_ids`; `empty_labels`: labels holding only ignored pixels. No image scored
    at all is a `DataError`."""
    check_any_scored(num_images, skipped)
    result = EvalResult(
        confusion, num_images, model, str(data_root), split,
        skipped=list(skipped) if skip_bad else None,
        extra={"scale": list(scale) if isinstance(scale, tuple) else scale,
               "scale_source": scale_source, "resize": resize, "seconds": round(seconds, 3)},
    )
    result.per_image = np.stack(per_image) if per_image else None
    result.image_ids = list(image_ids)
    result.warnings += empty_label_warnings(list(empty_labels), num_images)
    return result


def empty_label_warnings(empty: list[str], num_images: int) -> list[str]:
    """The warning for labels that hold only ignored pixels (none when `empty` is empty)."""
    if not empty:
        return []
    shown = ", ".join(empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
    what = "every scored label" if len(empty) == num_images else f"{len(empty)} label(s)"
    return [f"{what} hold(s) only ignored pixels (255), so they add nothing to the metrics: "
            f"{shown}"]


def check_any_scored(num_images: int, skipped: list[SkippedFile]) -> None:
    """A run that scored no image at all is a `DataError` naming the first skip's reason."""
    if num_images == 0:
        first = f"; first: {skipped[0].reason}" if skipped else ""
        raise DataError(f"no image could be evaluated ({len(skipped)} skipped){first}")
