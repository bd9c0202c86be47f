"""`evaluate` / `evaluate_predictions` / `ocrnet eval` over tiny engines that read the ground
truth back out of the palette-painted images (see `make_cityscapes`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _fakes import (
    ConstantEngine,
    LabelsOnlyEngine,
    OracleEngine,
    make_cityscapes,
    official_class_ious,
)
from ocrnet.cli import main
from ocrnet.data.cityscapes import CLASSES, PALETTE, TRAIN_TO_LABEL, discover
from ocrnet.data.transforms import preprocess, read_image
from ocrnet.engines.base import Engine
from ocrnet.errors import DataError, OcrnetError
from ocrnet.evaluate import evaluate, evaluate_predictions
from ocrnet.metrics import ConfusionMatrix

N = len(CLASSES)
SAME = (64, 32)  # the fixture's own size: no resize (the default 2048x1024 would upscale 32x)
_PALETTE = np.array(PALETTE, dtype=np.float32)  # RGB


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "cityscapes"
    return root, make_cityscapes(root, cities={"aachen": 2, "bochum": 1})


def test_oracle_scores_100(dataset: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, labels = dataset
    result = evaluate(OracleEngine(), root, scale=SAME, progress=False)
    present = set(np.unique(np.concatenate([lb.ravel() for lb in labels.values()]))) - {255}
    out = result.to_json()
    assert out["mIoU"] == 100.0 and out["aAcc"] == 100.0 and out["mAcc"] == 100.0
    assert [c["name"] for c in out["classes"]] == list(CLASSES)
    for i, cls in enumerate(out["classes"]):
        assert cls["IoU"] == (100.0 if i in present else None)
    assert out["num_images"] == 3 and out["split"] == "val" and out["data_root"] == str(root)
    assert out["model"] == "test-oracle" and "skipped" not in out
    json.dumps(out)  # serializable as is


def test_constant_prediction(dataset: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, labels = dataset
    gt = np.concatenate([lb.ravel() for lb in labels.values()])
    res = evaluate(ConstantEngine(0), root, batch_size=2, scale=SAME, progress=False).metrics
    road = (gt == 0).sum() / (gt != 255).sum()
    assert res.iou[0] == pytest.approx(road) and res.aacc == pytest.approx(road)
    for c in range(1, N):
        assert (res.iou[c] == 0.0) if (gt == c).any() else math.isnan(res.iou[c])


def _manual(root: Path, scale: tuple[int, int], path: str) -> ConfusionMatrix:
    """mmseg's test loop written out per image: preprocess, infer, resize back, argmax."""
    cm = ConfusionMatrix(N)
    for sample in discover(root):
        img = read_image(sample.image)
        x = preprocess(img, scale)[None]
        res = OracleEngine().infer(x, return_logits=True)
        size = img.shape[:2]
        if path == "logits":
            up = F.interpolate(torch.from_numpy(res.logits), size=size, mode="bilinear",
                               align_corners=False)
            pred = up.argmax(1)[0].numpy().astype(np.uint8)
        else:
            pred = F.interpolate(torch.from_numpy(res.labels)[None].float(), size=size,
                                 mode="nearest")[0, 0].numpy().astype(np.uint8)
        cm.update(pred, cv2.imread(str(sample.label), cv2.IMREAD_UNCHANGED))
    return cm


@pytest.mark.parametrize("resize", ["logits", "labels"])
def test_smaller_scale_resizes_back_like_mmseg(dataset: tuple[Path, dict[str, np.ndarray]],
                                               resize: str) -> None:
    root, _ = dataset
    result = evaluate(OracleEngine(), root, batch_size=2, scale=(40, 20), resize=resize,
                      progress=False)
    assert result.confusion == _manual(root, (40, 20), resize)
    assert 0.5 < result.miou < 1.0  # lossy at half size, but mostly right
    assert result.to_json()["scale"] == [40, 20]


def test_labels_only_engine_needs_resize_labels(dataset: tuple[Path, dict[str, np.ndarray]]
                                                ) -> None:
    root, _ = dataset
    # No resize needed: the labels are all it takes.
    assert evaluate(LabelsOnlyEngine(), root, scale=SAME, progress=False).miou == 1.0
    with pytest.raises(OcrnetError, match="--resize labels"):
        evaluate(LabelsOnlyEngine(), root, scale=(40, 20), progress=False)
    evaluate(LabelsOnlyEngine(), root, scale=(40, 20), resize="labels", progress=False)


def test_limit(dataset: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = dataset
    assert evaluate(OracleEngine(), root, limit=2, scale=SAME, progress=False).num_images == 2
    with pytest.raises(OcrnetError, match="limit"):
        evaluate(OracleEngine(), root, limit=0, progress=False)


# --- saved predictions -----------------------------------------------------------------------
def test_saved_predictions_score_the_same(dataset: tuple[Path, dict[str, np.ndarray]],
                                          tmp_path: Path) -> None:
    root, _ = dataset
    out = tmp_path / "preds"
    direct = evaluate(ConstantEngine(13), root, scale=(40, 20), resize="labels",
                      save_predictions=out, progress=False)
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"{s.stem}_pred_labelIds.png" for s in discover(root)]
    saved = cv2.imread(str(out / files[0]), cv2.IMREAD_UNCHANGED)
    assert saved.shape == (32, 64) and (saved == TRAIN_TO_LABEL[13]).all()  # car = labelId 26
    again = evaluate_predictions(out, root, progress=False)
    assert again.confusion == direct.confusion
    assert again.to_json()["predictions"] == str(out) and again.to_json()["model"] is None


def test_predictions_equal_cityscapesscripts(tmp_path: Path) -> None:
    root = tmp_path / "cs"
    labels = make_cityscapes(root, cities={"aachen": 2, "bochum": 1}, label_format="labelIds")
    rng = np.random.default_rng(3)
    preds, gts = [], []
    for sample in discover(root):
        label_ids = TRAIN_TO_LABEL[labels[sample.stem]]
        noise = rng.integers(0, 34, label_ids.shape).astype(np.uint8)  # void ids included
        pred = np.where(rng.random(label_ids.shape) < 0.7, label_ids, noise)
        preds.append(tmp_path / "results" / sample.city / f"{sample.stem}_leftImg8bit.png")
        preds[-1].parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(preds[-1]), pred)
        gts.append(sample.label)
    ours = evaluate_predictions(tmp_path / "results", root, progress=False).metrics
    official = official_class_ious(preds, gts)
    for name, iou in zip(CLASSES, ours.iou, strict=True):
        expected = official[name]
        assert math.isnan(iou) if math.isnan(expected) else iou == pytest.approx(expected), name


def test_prediction_matching_errors(dataset: tuple[Path, dict[str, np.ndarray]],
                                    tmp_path: Path) -> None:
    root, labels = dataset
    out = tmp_path / "preds"
    out.mkdir()
    stems = sorted(labels)
    for stem in stems[:2]:
        cv2.imwrite(str(out / f"{stem}_x.png"), TRAIN_TO_LABEL[labels[stem]])
    with pytest.raises(DataError, match=f"no prediction {stems[2]}"):
        evaluate_predictions(out, root, progress=False)
    result = evaluate_predictions(out, root, skip_bad=True, progress=False)
    assert result.num_images == 2 and len(result.to_json()["skipped"]) == 1
    cv2.imwrite(str(out / f"{stems[0]}_y.png"), TRAIN_TO_LABEL[labels[stems[0]]])
    with pytest.raises(DataError, match="several predictions"):
        evaluate_predictions(out, root, limit=1, progress=False)
    with pytest.raises(DataError, match="does not exist"):
        evaluate_predictions(tmp_path / "nope", root, progress=False)


@pytest.mark.parametrize("kind", ["unknown ids", "size", "corrupt"])
def test_bad_prediction_files(dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path,
                              kind: str) -> None:
    root, labels = dataset
    out = tmp_path / "preds"
    out.mkdir()
    for stem, label in labels.items():
        cv2.imwrite(str(out / f"{stem}.png"), TRAIN_TO_LABEL[label])
    bad = out / f"{sorted(labels)[1]}.png"
    if kind == "unknown ids":
        cv2.imwrite(str(bad), np.full((32, 64), 99, np.uint8))
    elif kind == "size":
        cv2.imwrite(str(bad), np.zeros((16, 16), np.uint8))
    else:
        bad.write_bytes(b"junk")
    with pytest.raises(DataError, match=bad.name):
        evaluate_predictions(out, root, progress=False)
    skipped = evaluate_predictions(out, root, skip_bad=True, progress=False).skipped
    assert skipped is not None and [s.path for s in skipped] == [str(bad)]


def test_skip_bad_lists_files_and_all_bad_is_an_error(
        dataset: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = dataset
    samples = discover(root)
    samples[0].image.write_bytes(b"junk")
    with pytest.raises(DataError, match=samples[0].image.name):
        evaluate(OracleEngine(), root, scale=SAME, progress=False)
    result = evaluate(OracleEngine(), root, skip_bad=True, scale=SAME, progress=False)
    assert result.num_images == 2
    (skipped,) = result.to_json()["skipped"]
    assert skipped["path"] == str(samples[0].image) and "decode" in skipped["reason"]
    for s in samples[1:]:
        s.image.write_bytes(b"junk")
    with pytest.raises(DataError, match="no image could be evaluated"):
        evaluate(OracleEngine(), root, skip_bad=True, scale=SAME, progress=False)


# --- the CLI ---------------------------------------------------------------------------------
def test_cli_eval_model(dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                        ) -> None:
    root, _ = dataset
    opened = []

    def fake_open_model(path: str, device: str = "cpu", **trust: bool) -> Engine:
        opened.append((path, device))
        return OracleEngine()

    monkeypatch.setattr("ocrnet.engines.open_model", fake_open_model, raising=False)
    discover(root)[0].image.write_bytes(b"junk")
    out = tmp_path / "r.json"
    rc = main(["eval", "--checkpoint", "fake.pth", "--data-root", str(root), "--skip-bad",
               "--scale", "64x32", "--batch-size", "2", "--json", str(out),
               "--save-predictions", str(tmp_path / "p"), "--no-progress"])
    assert rc == 0 and opened == [("fake.pth", "cpu")]
    printed = capsys.readouterr().out
    assert "road" in printed and "skipped 1 sample" in printed
    data = json.loads(out.read_text())
    assert data["mIoU"] == 100.0 and data["num_images"] == 2 and data["model"] == "fake.pth"
    assert len(data["skipped"]) == 1 and len(list((tmp_path / "p").iterdir())) == 2


def test_cli_eval_predictions(dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    root, labels = dataset
    preds = tmp_path / "preds"
    preds.mkdir()
    for stem, label in labels.items():
        cv2.imwrite(str(preds / f"{stem}_pred_labelIds.png"), TRAIN_TO_LABEL[label])
    out = tmp_path / "r.json"
    rc = main(["eval", "--predictions", str(preds), "--data-root", str(root), "--json", str(out)])
    assert rc == 0
    assert json.loads(out.read_text())["aAcc"] == 100.0
    assert "eval" in capsys.readouterr().err  # the progress bar


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data-root", "{root}/missing"], "missing"),
        (["--data-root", "{root}", "--split", "test"], "splits found: val"),
        (["--data-root", "{root}", "--scale", "big"], "WIDTHxHEIGHT"),
        (["--data-root", "{root}", "--batch-size", "0"], "batch size"),
        (["--data-root", "{root}", "--corrupt"], "aachen_000000_000019_leftImg8bit.png"),
    ],
)
def test_cli_errors_are_one_line(dataset: tuple[Path, dict[str, np.ndarray]],
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str], args: list[str],
                                 message: str) -> None:
    root, _ = dataset
    monkeypatch.setattr("ocrnet.engines.open_model",
                        lambda path, device="cpu", **trust: OracleEngine(), raising=False)
    if "--corrupt" in args:
        args = [a for a in args if a != "--corrupt"]
        discover(root)[0].image.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    argv = ["eval", "--model", "pkg", "--no-progress", "--scale", "64x32",
            *(a.format(root=root) for a in args)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ocrnet eval: error:") and message in err[0]


def test_cli_rejects_saving_saved_predictions(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", "--predictions", str(tmp_path), "--data-root", str(tmp_path),
            "--save-predictions", str(tmp_path / "x")]
    assert main(argv) == 1
    assert "--save-predictions needs a model" in capsys.readouterr().err


def test_synthetic_dataset_evaluates(tmp_path: Path) -> None:
    synthetic = pytest.importorskip("ocrnet.data.synthetic")
    synthetic.write_dataset(tmp_path, train=0, val=2, size=(64, 128), workers=0, progress=False)
    samples = discover(tmp_path)
    assert [s.label_format for s in samples] == ["trainIds", "trainIds"]  # preferred to labelIds
    result = evaluate(ConstantEngine(2), tmp_path, scale=(128, 64), progress=False)
    assert result.num_images == 2 and 0.0 < result.metrics.aacc < 1.0
