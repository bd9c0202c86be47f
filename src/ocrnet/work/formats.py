"""The one table of output formats and their encoders: `predict` writes them, `ocrnet serve`
answers with them, byte for byte the same.

Nothing heavy is imported at module load (`ocrnet serve --help` reads this table): the encoders
import NumPy, OpenCV and the palette inside the call.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ocrnet.errors import OcrnetError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class OutputFormat:
    """One rendering of a prediction: its name (`encode_prediction`'s `kind`), the name
    `ocrnet serve`'s `format=` calls it, and the suffix `predict` writes it under (None: not
    a file predict writes). `label_ids`: a label map (predict --format may pick it)."""

    name: str
    http: str
    suffix: str | None
    label_ids: bool = False


#: Every format, in the order serve lists them. "trainids": train ids 0..18 (255 ignored);
#: "cityscapes": official labelIds (what the Cityscapes benchmark accepts); "color": the
#: palette; "overlay": blended over the original image; "json": per-class pixel counts.
TABLE: tuple[OutputFormat, ...] = (
    OutputFormat("trainids", "labels", "_labelTrainIds.png", label_ids=True),
    OutputFormat("cityscapes", "labelids", "_pred_labelIds.png", label_ids=True),
    OutputFormat("color", "color", "_color.png"),
    OutputFormat("overlay", "overlay", "_overlay.png"),
    OutputFormat("json", "json", None),
)
BY_NAME = {f.name: f for f in TABLE}

#: predict --format -> suffix of the label PNG.
FORMATS: dict[str, str] = {f.name: f.suffix for f in TABLE if f.label_ids and f.suffix}
COLOR_SUFFIX = BY_NAME["color"].suffix or ""
OVERLAY_SUFFIX = BY_NAME["overlay"].suffix or ""
#: What one prediction encodes to as PNG bytes (`encode_prediction`'s kinds).
RENDERINGS = tuple(f.name for f in TABLE if f.suffix)
#: serve's `format=` -> the rendering (None: the JSON summary, `prediction_summary`).
HTTP_FORMATS: dict[str, str | None] = {
    f.http: (f.name if f.suffix else None) for f in TABLE}


def check_choice(value: str, valid: Sequence[str], what: str) -> str:
    """`value` if it is one of `valid`, else one `OcrnetError` line with a "did you mean"."""
    if value not in valid:
        hint = difflib.get_close_matches(str(value).lower(), valid, n=1)
        maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise OcrnetError(f"unknown {what} {value!r}{maybe}; valid: {', '.join(valid)}")
    return value


def check_opacity(opacity: float) -> float:
    """The overlay opacity, within 0..1 (one check for predict and serve)."""
    if not 0.0 <= opacity <= 1.0:
        raise OcrnetError(f"opacity must be within 0..1, got {opacity}")
    return opacity


def check_cityscapes_classes(fmt: str, num_classes: int | None, model: str) -> None:
    """Refuse official labelIds for a model whose classes are not Cityscapes' 19: its ids would
    be mapped as if they were, and the files would mean other classes."""
    from ocrnet.data.cityscapes import CLASSES

    if fmt == "cityscapes" and num_classes is not None and num_classes != len(CLASSES):
        raise OcrnetError(f"model {model} predicts {num_classes} classes, not the "
                          f"{len(CLASSES)} Cityscapes classes, so --format cityscapes (official "
                          "labelIds) would mislabel them; use --format trainids")


def encode_prediction(pred: np.ndarray, kind: str, *, image_bgr: np.ndarray | None = None,
                      opacity: float = 0.5) -> bytes:
    """One (H, W) train-id prediction as the PNG bytes `predict` writes for it.

    `kind` is one of `RENDERINGS`: "trainids", "cityscapes" (official labelIds), "color", or
    "overlay" (blended at `opacity` over `image_bgr`, the decoded original). `ocrnet serve`
    answers with these bytes, so its responses equal predict's files byte for byte.
    """
    from ocrnet.data.cityscapes import TRAIN_TO_LABEL
    from ocrnet.visualize import colorize, encode_png
    from ocrnet.visualize import overlay as blend

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


def prediction_summary(pred: np.ndarray, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-class pixel counts and fractions of one (H, W) train-id prediction, and its size.

    `{"height", "width", "pixels", "classes": [{"id", "name", "pixels", "fraction"}, ...]}`,
    every class listed in id order (absent ones with 0); ids without a class are not counted.
    `classes` defaults to Cityscapes' 19.
    """
    import numpy as np

    from ocrnet.data.cityscapes import CLASSES

    counts = np.bincount(pred.ravel(), minlength=256)
    total = int(pred.size)
    return {
        "height": int(pred.shape[0]),
        "width": int(pred.shape[1]),
        "pixels": total,
        "classes": [{"id": i, "name": name, "pixels": int(counts[i]),
                     "fraction": float(counts[i]) / total if total else 0.0}
                    for i, name in enumerate(CLASSES if classes is None else classes)],
    }
