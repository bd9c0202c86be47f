"""Test modes and confidence through the verbs: predict, eval (calibration), the CLI's options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ocrnet.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("modes-data")
    write_dataset(root, train=0, val=2, size=(48, 96), workers=0, progress=False)
    return root


@pytest.fixture(scope="module")
def engine():
    from _engine_helpers import checkpoint
    from ocrnet.engines import open_model

    with open_model(checkpoint()) as opened:
        yield opened


def test_predict_slide_with_confidence(tmp_path: Path, data: Path, engine):
    from ocrnet.predict import predict
    from ocrnet.work.modes import Mode, predict_image

    images = sorted((data / "leftImg8bit" / "val").rglob("*.png"))
    (first, *_) = predict(engine, images, tmp_path, mode="slide", crop="32x48",
                          stride="16x32", confidence=True, progress=False, scale="96x48")
    conf = Path(first["confidence"])
    assert conf.name.endswith("_confidence.png")
    from ocrnet.data.transforms import read_image

    image = read_image(images[0])
    ref = predict_image(engine, image, Mode.parse("slide", crop="32x48", stride="16x32"),
                        scale=(96, 48), confidence=True)
    import cv2

    saved = cv2.imread(str(conf), cv2.IMREAD_UNCHANGED)
    assert saved.dtype == np.uint8 and saved.shape == image.shape[:2]
    assert np.abs(saved.astype(int) - np.rint(ref.confidence * 255)).max() <= 1
    labels = cv2.imread(first["labels"], cv2.IMREAD_UNCHANGED)
    assert np.array_equal(labels, ref.labels)
    record = json.loads((tmp_path / "ocrnet-run.json").read_text())
    assert "slide" in json.dumps(record) and '"confidence": true' in json.dumps(record)


def test_eval_records_mode_and_calibration(data: Path, engine):
    from ocrnet.evaluate import evaluate

    whole = evaluate(engine, data, progress=False, calibration=True, scale=(96, 48))
    cal = whole.to_json()["calibration"]
    assert whole.to_json()["mode"] == "whole"
    assert cal["pixels"] > 0 and len(cal["bins"]) == 10 and 0 <= cal["ece"] <= 1
    aug = evaluate(engine, data, progress=False, mode="aug", ratios=[1.0], flip=False)
    # aug at one ratio without flip is whole: the same labels, the same matrix
    assert aug.to_json()["ratios"] == [1.0]
    assert np.array_equal(aug.per_image, whole.per_image)


def test_cli_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from ocrnet.cli import main

    code = main(["predict", "model.pth", "x.png", "--out", str(tmp_path), "--stride", "0x8"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "stride '0x8' is not HEIGHTxWIDTH" in err and "\n" not in err
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"no video here")
    from _engine_helpers import checkpoint

    code = main(["predict", str(checkpoint()), str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and f"cannot read video {bad}" in err and "\n" not in err
