"""The one sum of a run's records, whichever executor made them and in whatever order.

Each record is added once by its index; results come back in index (input) order. A record
with `error` stops the run with that line; a skipped file stops it too unless `skip_bad`.
A label is empty when its image's confusion matrix counted no pixel (`ConfusionMatrix.total
== 0`): every pixel ignored. That is the one empty-label rule, for every executor and for
saved predictions alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ocrnet.calibration import Calibration
from ocrnet.data.cityscapes import CLASSES
from ocrnet.data.loader import SkippedFile
from ocrnet.errors import BadFileError, OcrnetError
from ocrnet.metrics import ConfusionMatrix


class Tally:
    """Confusion matrices summed, other records kept, skipped files and why, by index."""

    def __init__(self, skip_bad: bool, num_classes: int = len(CLASSES)) -> None:
        self.skip_bad = skip_bad
        self.confusion = ConfusionMatrix(num_classes)
        self.scored: dict[int, ConfusionMatrix] = {}
        self.records: dict[int, dict[str, Any]] = {}
        self.skipped: dict[int, SkippedFile] = {}
        self.calibration: Calibration | None = None  # summed where records carry "cal"
        self.uncalibrated = 0  # scored images without a "cal" (a labels-only model)

    def add(self, index: int, record: dict[str, Any]) -> str | None:
        """Take one image's record; return the progress bar's postfix (the running mIoU)."""
        if "error" in record:
            raise OcrnetError(record["error"])
        if "skipped" in record:
            path = str(record.get("path", record.get("image")))
            if not self.skip_bad:
                raise BadFileError(path, record["skipped"])
            self.skipped[index] = SkippedFile(path, record["skipped"])
            self.records[index] = record
            return None
        if "cm" not in record:
            self.records[index] = record
            return None
        cm: ConfusionMatrix = record["cm"]
        self.scored[index] = cm
        self.confusion.merge(cm)
        if "cal" in record:
            self.calibration = (self.calibration or Calibration()).merge(record["cal"])
        else:
            self.uncalibrated += 1
        miou = self.confusion.results().miou
        return "mIoU " + ("-" if math.isnan(miou) else f"{miou * 100:.2f}")

    @property
    def num_images(self) -> int:
        return len(self.scored)

    def skipped_in_order(self) -> list[SkippedFile]:
        return [self.skipped[i] for i in sorted(self.skipped)]

    def records_in_order(self) -> list[dict[str, Any]]:
        return [self.records[i] for i in sorted(self.records)]

    def scored_in_order(self) -> list[tuple[int, ConfusionMatrix]]:
        return sorted(self.scored.items())

    def empty(self) -> list[int]:
        """The scored indices whose label held only ignored pixels, in order."""
        return [i for i, cm in self.scored_in_order() if cm.total == 0]


# --- records on the wire (JSON, between processes) -------------------------------------------
def to_wire(record: dict[str, Any]) -> dict[str, Any]:
    """A record as JSON-ready data: a confusion matrix as its integer counts."""
    cm = record.get("cm")
    if cm is None:
        return record
    rest = {k: v for k, v in record.items() if k not in ("cm", "cal")}
    if "cal" in record:
        rest["cal"] = record["cal"].to_dict()["sums"]
    return {**rest, "cm": {"n": cm.num_classes, "matrix": cm.matrix.ravel().tolist(),
                           "missed": cm.missed.tolist()}}


def from_wire(record: dict[str, Any]) -> dict[str, Any]:
    """`to_wire`'s inverse: the counts back into a `ConfusionMatrix`, exactly."""
    data = record.get("cm")
    if data is None:
        return record
    n = int(data["n"])
    cm = ConfusionMatrix(n)
    cm.matrix[:] = np.asarray(data["matrix"], dtype=np.int64).reshape(n, n)
    cm.missed[:] = np.asarray(data["missed"], dtype=np.int64)
    if "cal" in record:
        return {**record, "cm": cm, "cal": Calibration.from_dict({"sums": record["cal"]})}
    return {**record, "cm": cm}
