"""The confusion matrix equals mmseg's IoUMetric and the official cityscapesscripts IoUs."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from _fakes import official_class_ious, write_label_id_pairs
from ocrnet.data.cityscapes import CLASSES, LABEL_TO_TRAIN
from ocrnet.metrics import ConfusionMatrix

N = len(CLASSES)


def _random_pair(seed: int, shape: tuple[int, int] = (24, 40)) -> tuple[np.ndarray, np.ndarray]:
    """Train-id labels with ignored pixels and predictions with a few non-class values."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, N, shape).astype(np.uint8)
    label[rng.random(shape) < 0.15] = 255
    label[label == 16] = 3  # class 16 absent from the labels ...
    pred = np.where(rng.random(shape) < 0.6, label, rng.integers(0, N, shape)).astype(np.uint8)
    pred[rng.random(shape) < 0.05] = 255  # predicted "nothing": a miss wherever labelled
    pred[(pred == 16) | (pred == 17)] = 4  # ... nor predicted; class 17 never predicted
    pred[label == 17] = 4  # so 17 has label pixels, no hits: IoU 0
    return pred, label


def _mmseg_reference(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """mmseg IoUMetric semantics written out with torch.histc over 0..N-1 (float areas)."""
    totals = [torch.zeros(N) for _ in range(4)]
    for pred, label in pairs:
        p, lab = torch.from_numpy(pred).long(), torch.from_numpy(label).long()
        mask = lab != 255
        p, lab = p[mask], lab[mask]
        inter = p[p == lab]
        areas = [torch.histc(x.float(), bins=N, min=0, max=N - 1) for x in (inter, p, lab)]
        union = areas[1] + areas[2] - areas[0]
        for total, area in zip(totals, [areas[0], union, areas[1], areas[2]], strict=True):
            total += area
    inter, union, _, label_area = (t.double().numpy() for t in totals)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"IoU": inter / union, "Acc": inter / label_area,
                "aAcc": np.array(inter.sum() / label_area.sum())}


def test_equals_mmseg_iou_metric() -> None:
    pairs = [_random_pair(seed) for seed in range(3)]
    cm = ConfusionMatrix(N)
    for pred, label in pairs:
        cm.update(pred, label)
    res = cm.results(CLASSES)
    ref = _mmseg_reference(pairs)
    np.testing.assert_allclose(res.iou, ref["IoU"], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(res.acc, ref["Acc"], rtol=1e-12, equal_nan=True)
    assert res.aacc == pytest.approx(float(ref["aAcc"]), rel=1e-12)
    assert math.isnan(res.iou[16]) and math.isnan(res.acc[16])  # absent from both
    assert res.iou[17] == 0.0
    assert res.miou == pytest.approx(float(np.nanmean(ref["IoU"])), rel=1e-12)
    assert res.macc == pytest.approx(float(np.nanmean(ref["Acc"])), rel=1e-12)


def test_counts_and_ignore() -> None:
    cm = ConfusionMatrix(3)
    label = np.array([0, 0, 1, 2, 255, 2])
    pred = np.array([0, 1, 1, 255, 2, 2])
    cm.update(pred, label)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert cm.missed.tolist() == [0, 0, 1]
    assert cm.total == 5
    res = cm.results(["a", "b", "c"])
    assert res.iou.tolist() == [0.5, 0.5, 0.5]
    assert res.acc.tolist() == [0.5, 1.0, 0.5]
    assert res.aacc == 3 / 5


def test_merge_is_exact_addition() -> None:
    pairs = [_random_pair(seed) for seed in range(4)]
    whole, a, b = ConfusionMatrix(), ConfusionMatrix(), ConfusionMatrix()
    for i, (pred, label) in enumerate(pairs):
        whole.update(pred, label)
        (a if i % 2 else b).update(pred, label)
    assert a + b == whole
    assert ConfusionMatrix.from_json(a.to_json()).merge(b) == whole
    c = a.copy()
    c += b
    assert c == whole and a != whole


def test_results_json_is_percent_with_null_for_nan() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1]), np.array([0, 0]))
    out = cm.results(["a", "b", "c"]).to_json()
    assert out["classes"][0] == {"name": "a", "IoU": 50.0, "Acc": 50.0}
    assert out["classes"][1] == {"name": "b", "IoU": 0.0, "Acc": None}
    assert out["classes"][2] == {"name": "c", "IoU": None, "Acc": None}
    assert out["mIoU"] == 25.0 and out["mAcc"] == 50.0 and out["aAcc"] == 50.0
    assert "nan" in cm.results(["a", "b", "c"]).table()


def test_rejects_bad_input() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"\[7\]"):
        cm.update(np.zeros(2), np.array([0, 7]))
    with pytest.raises(ValueError, match="merge"):
        cm.merge(ConfusionMatrix(4))


# --- the official evaluation -----------------------------------------------------------------
def test_class_ious_equal_cityscapesscripts(tmp_path: Path) -> None:
    preds, gts = write_label_id_pairs(tmp_path)
    cm = ConfusionMatrix(N)
    for p, g in zip(preds, gts, strict=True):
        pred = LABEL_TO_TRAIN[cv2.imread(str(p), cv2.IMREAD_UNCHANGED)]
        gt = LABEL_TO_TRAIN[cv2.imread(str(g), cv2.IMREAD_UNCHANGED)]
        cm.update(pred, gt)
    ours = cm.results(CLASSES)
    official = official_class_ious(preds, gts)
    for name, iou in zip(CLASSES, ours.iou, strict=True):
        if math.isnan(official[name]):
            assert math.isnan(iou), name
        else:
            assert iou == pytest.approx(official[name], rel=1e-12), name
    assert math.isnan(official["train"])
    assert official["motorcycle"] == 0.0
