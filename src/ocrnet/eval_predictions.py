"""Scoring saved labelIds PNGs: each sample paired with its one prediction file (matched as
cityscapesscripts matches them), each pair scored on its own, and the run's `EvalResult`.
In-process `evaluate_predictions` and `eval --predictions --ray` share every step here.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path

import cv2
import numpy as np

from ocrnet.data.cityscapes import Sample
from ocrnet.data.images import read_image
from ocrnet.data.loader import BadFileError, SkippedFile
from ocrnet.errors import DataError
from ocrnet.eval_result import EvalResult, check_any_scored, empty_label_warnings
from ocrnet.metrics import ConfusionMatrix
from ocrnet.work.scoring import score_pair

__all__ = ["pair_predictions", "predictions_result", "score_pair"]


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


def predictions_result(confusion: ConfusionMatrix, num_images: int,
                       predictions: str | os.PathLike[str], data_root: str | os.PathLike[str],
                       split: str, *, skipped: list[SkippedFile], skip_bad: bool,
                       seconds: float, pairs: list[tuple[Sample, Path]],
                       empty_labels: list[str]) -> EvalResult:
    """The `EvalResult` of scoring saved predictions (in-process or on Ray): `pairs` as
    `pair_predictions` made them, `empty_labels` the labels that scored no pixel."""
    check_any_scored(num_images, skipped)
    result = EvalResult(
        confusion, num_images, None, str(data_root), split,
        skipped=list(skipped) if skip_bad else None,
        extra={"predictions": str(Path(predictions)), "seconds": round(seconds, 3)},
    )
    result.warnings += _train_ids_warning([path for _, path in pairs[:_SNIFF]])
    result.warnings += empty_label_warnings(list(empty_labels), num_images)
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
            raw = read_image(path, flags=cv2.IMREAD_UNCHANGED)
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
