"""Confusion matrix -> IoU / Acc tables, with mmseg's `IoUMetric` semantics.

One int64 matrix per run, accumulated image by image; every number derives from it, so shards
add up exactly (mmseg sums float32 `histc` areas, which loses integer precision past 2**24 pixels
per class; the int64 counts here are exact). Semantics, per class c:

    intersect = pixels labelled c and predicted c        area_label = pixels labelled c
    area_pred = pixels predicted c (among labelled ones)  union = area_pred + area_label - intersect
    IoU = intersect / union       Acc = intersect / area_label     (NaN where the divisor is 0)
    mIoU, mAcc = nanmean          aAcc = sum(intersect) / sum(area_label)

Pixels labelled `ignore_index` are left out. A labelled pixel predicted as something that is not a
class (255, or an id past the last class) still counts in `area_label` (a miss), as in mmseg's
`histc` and in cityscapesscripts; it is kept in `missed` since the matrix has no column for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ocrnet.tables import text_table


class ConfusionMatrix:
    """Counts (label, prediction) pairs: `matrix[label, pred]`, int64, `num_classes` squared.

    `missed[label]` counts labelled pixels whose prediction is not a class. Matrices merge by
    addition (`a + b`, `a.merge(b)`), so per-worker or per-shard results combine losslessly.
    """

    def __init__(self, num_classes: int = 19, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.missed = np.zeros(num_classes, dtype=np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add one image (or a batch) of predicted and true train ids of the same shape."""
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} != label shape {label.shape}")
        n = self.num_classes
        label = label.ravel()
        keep = label != self.ignore_index
        lab = label[keep].astype(np.intp)
        if lab.size and (lab.min() < 0 or lab.max() >= n):
            bad = np.unique(lab[(lab < 0) | (lab >= n)])[:10].tolist()
            raise ValueError(f"label values {bad} are neither class ids (0..{n - 1}) nor "
                             f"ignore_index ({self.ignore_index})")
        prd = pred.ravel()[keep].astype(np.intp)
        prd[(prd < 0) | (prd >= n)] = n  # every non-class prediction lands in column n ("missed")
        counts = np.bincount(lab * (n + 1) + prd, minlength=n * (n + 1)).reshape(n, n + 1)
        self.matrix += counts[:, :n]
        self.missed += counts[:, n]

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add `other`'s counts into this matrix (in place) and return it."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_index}) "
                f"into a {self.num_classes}-class one (ignore {self.ignore_index})"
            )
        self.matrix += other.matrix
        self.missed += other.missed
        return self

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.copy().merge(other)

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        return (
            self.ignore_index == other.ignore_index
            and np.array_equal(self.matrix, other.matrix)
            and np.array_equal(self.missed, other.missed)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> ConfusionMatrix:
        out = ConfusionMatrix(self.num_classes, self.ignore_index)
        out.matrix[:] = self.matrix
        out.missed[:] = self.missed
        return out

    @property
    def total(self) -> int:
        """Labelled (not ignored) pixels counted so far."""
        return int(self.matrix.sum() + self.missed.sum())

    # --- derived areas (mmseg's names) ----------------------------------------------------
    @property
    def area_intersect(self) -> np.ndarray:
        return np.diag(self.matrix).copy()

    @property
    def area_label(self) -> np.ndarray:
        return self.matrix.sum(axis=1) + self.missed

    @property
    def area_pred(self) -> np.ndarray:
        return self.matrix.sum(axis=0)

    @property
    def area_union(self) -> np.ndarray:
        return self.area_pred + self.area_label - self.area_intersect

    def results(self, class_names: Sequence[str] | None = None) -> MetricResults:
        """IoU, Acc per class and mIoU, mAcc, aAcc (fractions; NaN where undefined)."""
        names = tuple(class_names) if class_names is not None else tuple(
            f"class {i}" for i in range(self.num_classes))
        if len(names) != self.num_classes:
            raise ValueError(f"expected {self.num_classes} class names, got {len(names)}")
        inter = self.area_intersect.astype(np.float64)
        label = self.area_label.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / self.area_union.astype(np.float64)
            acc = inter / label
            aacc = float(inter.sum() / label.sum()) if label.sum() else math.nan
        return MetricResults(names, iou, acc, aacc)

    # --- (de)serialisation, for shards written by separate processes ---------------------
    def to_json(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index,
                "matrix": self.matrix.tolist(), "missed": self.missed.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConfusionMatrix:
        out = cls(int(data["num_classes"]), int(data["ignore_index"]))
        out.matrix[:] = np.asarray(data["matrix"], dtype=np.int64)
        out.missed[:] = np.asarray(data["missed"], dtype=np.int64)
        return out


def image_confusion(pred: np.ndarray, label: np.ndarray, num_classes: int = 19,
                    ignore_index: int = 255) -> ConfusionMatrix:
    """One image's own confusion matrix: what eval sums, in one process or across a cluster
    (integer counts, so any grouping or order of the sum gives the same matrix)."""
    out = ConfusionMatrix(num_classes, ignore_index)
    out.update(pred, label)
    return out


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _percent(value: float) -> float | None:
    return None if math.isnan(value) else float(value) * 100.0


@dataclass(frozen=True)
class MetricResults:
    """Per-class IoU and Acc (fractions, NaN for classes absent from labels and predictions)."""

    class_names: tuple[str, ...]
    iou: np.ndarray
    acc: np.ndarray
    aacc: float

    @property
    def miou(self) -> float:
        return _nanmean(self.iou)

    @property
    def macc(self) -> float:
        return _nanmean(self.acc)

    def to_json(self) -> dict[str, Any]:
        """Percent, with None (JSON null) for NaN."""
        return {
            "mIoU": _percent(self.miou),
            "aAcc": _percent(self.aacc),
            "mAcc": _percent(self.macc),
            "classes": [
                {"name": name, "IoU": _percent(iou), "Acc": _percent(acc)}
                for name, iou, acc in zip(self.class_names, self.iou, self.acc, strict=True)
            ],
        }

    def table(self) -> str:
        """A per-class table in percent with two decimals (as mmseg logs it), then the means."""
        def fmt(value: float) -> str:
            return "nan" if math.isnan(value) else f"{value * 100:.2f}"

        rows = [[name, fmt(iou), fmt(acc)]
                for name, iou, acc in zip(self.class_names, self.iou, self.acc, strict=True)]
        return text_table(["class", "IoU", "Acc"], rows,
                          footer=[["mean", fmt(self.miou), fmt(self.macc)],
                                  ["aAcc", fmt(self.aacc), ""]])
