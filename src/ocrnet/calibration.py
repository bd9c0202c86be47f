"""How sure a model is where it is right and where it is wrong: confidence calibration.

Per labelled pixel, the confidence is the maximum softmax probability of the prediction at the
original size (`ocrnet.work.modes.confidence_at`). `Calibration` keeps, per confidence bin
(10 equal bins over 0..1, the last one closed), the number of pixels, how many of them are
right, and the sum of their confidences, split by right and wrong: integer counts and float64
sums that add up across images and workers like the confusion matrix, so a distributed or
per-image evaluation merges without loss of meaning.

From them: the mean confidence of right and of wrong pixels, a reliability table (per bin: mean
confidence against accuracy) and the expected calibration error
ECE = sum_b (n_b / N) * |accuracy_b - confidence_b| (Guo et al., 2017). Pixels labelled
`ignore_index` are left out, as in the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ocrnet.tables import text_table

BINS = 10


def _zeros_int() -> np.ndarray:
    return np.zeros(BINS, np.int64)


def _zeros_float() -> np.ndarray:
    return np.zeros(BINS, np.float64)


@dataclass
class Calibration:
    """Per-bin counts and confidence sums; `a + b` merges two (shards, images, workers)."""

    pixels: np.ndarray = field(default_factory=_zeros_int)
    correct: np.ndarray = field(default_factory=_zeros_int)
    conf_correct: np.ndarray = field(default_factory=_zeros_float)
    conf_wrong: np.ndarray = field(default_factory=_zeros_float)
    ignore_index: int = 255

    def update(self, confidence: np.ndarray, pred: np.ndarray, label: np.ndarray) -> None:
        """Add one image: (H, W) confidence in 0..1, predicted and true train ids."""
        if not confidence.shape == pred.shape == label.shape:
            raise ValueError(f"confidence {confidence.shape}, prediction {pred.shape} and "
                             f"label {label.shape} must have one shape")
        keep = label.ravel() != self.ignore_index
        conf = confidence.ravel()[keep].astype(np.float64)
        right = pred.ravel()[keep] == label.ravel()[keep]
        bins = np.minimum((conf * BINS).astype(np.intp), BINS - 1)
        bins = np.maximum(bins, 0)
        self.pixels += np.bincount(bins, minlength=BINS)
        self.correct += np.bincount(bins[right], minlength=BINS)
        self.conf_correct += np.bincount(bins[right], weights=conf[right], minlength=BINS)
        self.conf_wrong += np.bincount(bins[~right], weights=conf[~right], minlength=BINS)

    def merge(self, other: Calibration) -> Calibration:
        """Add `other`'s counts into this one (in place) and return it."""
        self.pixels += other.pixels
        self.correct += other.correct
        self.conf_correct += other.conf_correct
        self.conf_wrong += other.conf_wrong
        return self

    def __add__(self, other: Calibration) -> Calibration:
        return Calibration(self.pixels + other.pixels, self.correct + other.correct,
                           self.conf_correct + other.conf_correct,
                           self.conf_wrong + other.conf_wrong, self.ignore_index)

    # --- the numbers ------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return int(self.pixels.sum())

    @property
    def mean_confidence_correct(self) -> float | None:
        n = int(self.correct.sum())
        return float(self.conf_correct.sum() / n) if n else None

    @property
    def mean_confidence_wrong(self) -> float | None:
        n = int((self.pixels - self.correct).sum())
        return float(self.conf_wrong.sum() / n) if n else None

    @property
    def ece(self) -> float | None:
        """Expected calibration error over the 10 bins (0 = perfectly calibrated)."""
        total = self.total
        if not total:
            return None
        used = self.pixels > 0
        acc = self.correct[used] / self.pixels[used]
        conf = (self.conf_correct + self.conf_wrong)[used] / self.pixels[used]
        return float(np.sum(self.pixels[used] / total * np.abs(acc - conf)))

    def bins(self) -> list[dict[str, Any]]:
        """The reliability table: per bin its bounds, pixels, mean confidence and accuracy."""
        rows = []
        for b in range(BINS):
            n = int(self.pixels[b])
            conf = float((self.conf_correct[b] + self.conf_wrong[b]) / n) if n else None
            rows.append({"lower": b / BINS, "upper": (b + 1) / BINS, "pixels": n,
                         "confidence": conf,
                         "accuracy": float(self.correct[b] / n) if n else None})
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The `calibration` block of `eval --json`: summary numbers, bins and raw sums."""
        return {
            "pixels": self.total,
            "mean_confidence_correct": self.mean_confidence_correct,
            "mean_confidence_wrong": self.mean_confidence_wrong,
            "ece": self.ece,
            "bins": self.bins(),
            # the raw sums, so saved results still merge exactly
            "sums": {"pixels": self.pixels.tolist(), "correct": self.correct.tolist(),
                     "conf_correct": self.conf_correct.tolist(),
                     "conf_wrong": self.conf_wrong.tolist()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Back from `to_dict` (its `sums`), e.g. to merge results saved by separate runs."""
        sums = data["sums"]
        return cls(np.asarray(sums["pixels"], np.int64), np.asarray(sums["correct"], np.int64),
                   np.asarray(sums["conf_correct"], np.float64),
                   np.asarray(sums["conf_wrong"], np.float64))

    def table(self) -> str:
        """The reliability table as aligned text, with the summary line under it."""
        rows = [[f"{r['lower']:.1f}-{r['upper']:.1f}", str(r["pixels"]), _pct(r["confidence"]),
                 _pct(r["accuracy"])] for r in self.bins()]
        body = text_table(["confidence", "pixels", "mean conf %", "accuracy %"], rows)
        summary = (f"mean confidence: right {_pct(self.mean_confidence_correct)} %, wrong "
                   f"{_pct(self.mean_confidence_wrong)} %; ECE {_pct(self.ece)} %")
        return f"{body}\n{summary}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"
