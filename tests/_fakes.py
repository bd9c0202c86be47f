"""Shared test doubles and tiny dataset writers (test files import these, never each other).

- `make_cityscapes`: a tiny Cityscapes-layout dataset whose images paint their labels with the
  palette, so `OracleEngine` reads the ground truth back out of the normalized input.
- `official_class_ious` / `write_label_id_pairs`: the official cityscapesscripts evaluation and
  random labelIds pairs for it.
- `OracleEngine`, `LabelsOnlyEngine`, `ConstantEngine`: engines with known answers.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ocrnet.data.cityscapes import CLASSES, IGNORE_INDEX, PALETTE, TRAIN_TO_LABEL
from ocrnet.data.transforms import MEAN, STD
from ocrnet.engines.base import Engine, InferResult

_PALETTE = np.array(PALETTE, dtype=np.float32)  # RGB


# --- datasets ----------------------------------------------------------------------------------
def make_cityscapes(
    root: Path,
    split: str = "val",
    cities: dict[str, int] | None = None,
    *,
    size: tuple[int, int] = (32, 64),
    label_format: str = "trainIds",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write a tiny dataset in the Cityscapes layout; return {stem: train-id label}.

    Each image paints its label with the palette (BGR; ignored pixels black), so a test engine
    can read the ground truth back out of the normalized input. `label_format` is "trainIds",
    "labelIds" or "both".
    """
    rng = np.random.default_rng(seed)
    h, w = size
    palette_bgr = np.array([c[::-1] for c in PALETTE] + [(0, 0, 0)], dtype=np.uint8)
    out = {}
    for city, count in (cities or {"aachen": 2, "bochum": 1}).items():
        img_dir = root / "leftImg8bit" / split / city
        gt_dir = root / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            stem = f"{city}_{i:06d}_{19 + i:06d}"
            # Blocks of 4x4 pixels, so that resizing keeps most pixels inside one class.
            coarse = rng.integers(0, len(CLASSES) + 1, size=(h // 4, w // 4))
            label = np.repeat(np.repeat(coarse, 4, 0), 4, 1).astype(np.uint8)
            label[label == len(CLASSES)] = IGNORE_INDEX
            image = palette_bgr[np.minimum(label, len(CLASSES))]
            cv2.imwrite(str(img_dir / f"{stem}_leftImg8bit.png"), image)
            if label_format in ("trainIds", "both"):
                cv2.imwrite(str(gt_dir / f"{stem}_gtFine_labelTrainIds.png"), label)
            if label_format in ("labelIds", "both"):
                cv2.imwrite(str(gt_dir / f"{stem}_gtFine_labelIds.png"), TRAIN_TO_LABEL[label])
            # Real gtFine folders hold these too; discovery must ignore them.
            (gt_dir / f"{stem}_gtFine_polygons.json").write_text("{}")
            out[stem] = label
    return out


# --- the official evaluation -------------------------------------------------------------------
def official_class_ious(preds: list[Path], gts: list[Path]) -> dict[str, float]:
    """cityscapesscripts' evaluateImgLists on labelIds PNGs: {class name: IoU}."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = official.args
    saved = dict(vars(args))
    # No instance-level scores (they need *_instanceIds.png), no JSON file, no printing.
    args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, True
    try:
        result = official.evaluateImgLists([str(p) for p in preds], [str(g) for g in gts], args)
    finally:
        vars(args).clear()
        vars(args).update(saved)
    return result["classScores"]


def write_label_id_pairs(tmp_path: Path, n: int = 3) -> tuple[list[Path], list[Path]]:
    """Random labelIds ground truth (void ids included) and predictions (void ids included)."""
    rng = np.random.default_rng(7)
    preds, gts = [], []
    for i in range(n):
        gt = rng.integers(0, 34, (24, 40)).astype(np.uint8)
        gt[gt == 31] = 7  # 'train' absent from the ground truth
        pred = np.where(rng.random(gt.shape) < 0.5, gt, rng.integers(0, 34, gt.shape))
        pred = pred.astype(np.uint8)
        pred[pred == 31] = 0  # nor predicted
        pred[pred == 32] = 26  # 'motorcycle' never predicted
        gts.append(tmp_path / f"aachen_{i:06d}_000019_gtFine_labelIds.png")
        preds.append(tmp_path / f"aachen_{i:06d}_000019_pred.png")
        cv2.imwrite(str(gts[-1]), gt)
        cv2.imwrite(str(preds[-1]), pred)
    return preds, gts


# --- engines with known answers ----------------------------------------------------------------
class OracleEngine(Engine):
    """Reads each pixel's class from its palette colour: the ground truth, at any scale."""

    backend = "test-oracle"

    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        rgb = batch * np.array(STD, np.float32)[:, None, None] + np.array(MEAN, np.float32)[
            :, None, None]
        dist = ((rgb[:, None] - _PALETTE[None, :, :, None, None]) ** 2).sum(axis=2)
        logits = -dist  # (N, 19, H, W): highest for the closest palette colour
        return InferResult(logits.argmax(1).astype(np.uint8), logits if want_logits else None)


class LabelsOnlyEngine(OracleEngine):
    backend = "test-labels-only"

    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        return InferResult(super()._infer_impl(batch, False).labels)


class ConstantEngine(Engine):
    """Predicts class `value` everywhere."""

    backend = "test-constant"

    def __init__(self, value: int = 0) -> None:
        super().__init__()
        self.value = value

    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        return InferResult(np.full((len(batch), *batch.shape[2:]), self.value, np.uint8))
