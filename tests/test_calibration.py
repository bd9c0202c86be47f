"""Calibration: per-bin counts that merge across images, mean confidence right vs wrong, ECE."""

from __future__ import annotations

import json

import numpy as np

from ocrnet.calibration import Calibration


def _image(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(1 / 19, 1.0, (20, 30)).astype(np.float32)
    label = rng.integers(0, 19, (20, 30)).astype(np.uint8)
    right = rng.uniform(size=(20, 30)) < conf  # calibrated by construction
    pred = np.where(right, label, (label + 1) % 19).astype(np.uint8)
    label[:2] = 255
    return conf, pred, label


def test_hand_computed_example():
    cal = Calibration()
    conf = np.array([[0.95, 0.95, 0.55, 1.0]], np.float32)
    pred = np.array([[1, 1, 2, 3]], np.uint8)
    label = np.array([[1, 0, 2, 255]], np.uint8)
    cal.update(conf, pred, label)
    assert cal.pixels.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert cal.total == 3
    assert cal.mean_confidence_correct == np.float32(0.95) / 2 + np.float32(0.55) / 2
    assert cal.mean_confidence_wrong == float(np.float32(0.95))
    # bin 5: conf 0.55, acc 1 -> |0.45|; bin 9: conf 0.95, acc 0.5 -> |0.45|
    assert abs(cal.ece - 0.45) < 1e-6
    assert cal.bins()[9]["accuracy"] == 0.5 and cal.bins()[0]["confidence"] is None


def test_confidence_one_lands_in_the_last_bin():
    cal = Calibration()
    cal.update(np.ones((2, 2), np.float32), np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))
    assert cal.pixels[-1] == 4 and cal.ece == 0.0


def test_merge_equals_one_pass_and_survives_json():
    images = [_image(s) for s in range(3)]
    whole = Calibration()
    whole.update(*(np.concatenate(parts) for parts in zip(*images, strict=True)))
    shards = [Calibration() for _ in images]
    for cal, img in zip(shards, images, strict=True):
        cal.update(*img)
    merged = shards[0] + shards[1]
    merged.merge(Calibration.from_dict(json.loads(json.dumps(shards[2].to_dict()))))
    assert merged.pixels.tolist() == whole.pixels.tolist()
    assert merged.correct.tolist() == whole.correct.tolist()
    assert abs(merged.ece - whole.ece) < 1e-12
    assert merged.ece < 0.05  # calibrated by construction
    assert merged.mean_confidence_correct > merged.mean_confidence_wrong


def test_empty_and_table():
    cal = Calibration()
    assert cal.ece is None and cal.mean_confidence_wrong is None
    cal.update(*_image(7))
    text = cal.table()
    assert "0.9-1.0" in text and "ECE" in text.splitlines()[-1]
