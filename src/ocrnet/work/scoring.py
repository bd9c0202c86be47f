"""One saved prediction scored against its label: the pair kernel's per-item step."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ocrnet.data.cityscapes import CLASSES, Sample, label_ids_to_train_ids, read_label
from ocrnet.data.images import read_image
from ocrnet.errors import BadFileError, DataError
from ocrnet.metrics import ConfusionMatrix, image_confusion


def score_pair(pair: tuple[Sample, Path]) -> ConfusionMatrix:
    """One saved prediction scored against its label (`image_confusion`); `BadFileError`
    names the file at fault. In-process and `eval --predictions --ray` both run this."""
    pred, label = load_pair(pair)
    return image_confusion(pred, label, len(CLASSES))


def load_pair(pair: tuple[Sample, Path]) -> tuple[np.ndarray, np.ndarray]:
    """The prediction (labelIds PNG -> train ids) and its label, checked to match."""
    sample, pred_path = pair
    label_path = sample.label or sample.image  # discover(labels_required=True) sets .label
    try:
        label = read_label(label_path, sample.label_format or "trainIds")
    except DataError as err:
        raise BadFileError(label_path, str(err)) from None
    # Through data/images like every image: size-checked from the header, errors skippable.
    raw = read_image(pred_path, flags=cv2.IMREAD_UNCHANGED)
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
