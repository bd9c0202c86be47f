"""Paired bootstrap intervals of ΔmIoU (`ocrnet.stats`), in eval and as `run --max-drop`'s gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ocrnet.engines.base import Engine, InferResult
from ocrnet.errors import OcrnetError
from ocrnet.metrics import ConfusionMatrix, image_confusion
from ocrnet.stats import miou_of, paired_bootstrap


def _population(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-image matrices of a perfect reference and of a model that turns a known share
    (varying per image, 0-30%) of class 1's pixels into class 2."""
    rng = np.random.default_rng(seed)
    ref, model = [], []
    for _ in range(n):
        label = rng.integers(0, 4, (16, 16)).astype(np.uint8)
        pred = label.copy()
        ones = np.flatnonzero(label == 1)
        hit = rng.choice(ones, size=int(len(ones) * rng.uniform(0, 0.3)), replace=False)
        pred.flat[hit] = 2
        ref.append(image_confusion(label, label).matrix)
        model.append(image_confusion(pred, label).matrix)
    return np.stack(model), np.stack(ref)


def test_miou_of_matches_the_metrics_module() -> None:
    model, _ = _population(5)
    total = ConfusionMatrix()
    total.matrix[:] = model.sum(0)
    assert miou_of(model.sum(0)) == pytest.approx(total.results().miou)


def test_interval_covers_the_true_delta() -> None:
    """Samples of 40 images from a 2,000-image population: the 95% interval covers the
    population's ΔmIoU in (about) 95% of samples, and always contains its own point."""
    model, ref = _population(2000)
    true_delta = 100 * float(miou_of(model.sum(0)) - miou_of(ref.sum(0)))
    rng = np.random.default_rng(1)
    covered = 0
    for k in range(40):
        pick = rng.choice(2000, size=40, replace=False)
        ci = paired_bootstrap(model[pick], ref[pick], resamples=1000, seed=k)
        assert ci.low <= ci.delta <= ci.high < 0
        covered += ci.low <= true_delta <= ci.high
    assert covered >= 34  # 95% nominal: P(binomial(40, 0.95) < 34) < 1%


def test_identical_models_have_a_zero_interval() -> None:
    _, ref = _population(10)
    ci = paired_bootstrap(ref, ref)
    assert (ci.delta, ci.low, ci.high) == (0.0, 0.0, 0.0)
    with pytest.raises(OcrnetError, match="same images"):
        paired_bootstrap(ref[:3], ref[:4])


def test_gate_trips_exactly_below_the_budget() -> None:
    from ocrnet.pipeline import AccuracyGateError, check_max_drop

    model, ref = _population(30)
    ci = paired_bootstrap(model, ref)
    report = {"results": [
        {"precision": "fp32", "backend": "torch", "delta_mIoU": 0.0, "delta_ci": None},
        {"precision": "int8", "backend": "openvino", "delta_mIoU": ci.delta,
         "delta_ci": [ci.low, ci.high]}]}
    check_max_drop(report, -ci.low + 1e-9)  # lower bound just inside the budget: passes
    with pytest.raises(AccuracyGateError, match=r"int8 \(openvino"):
        check_max_drop(report, -ci.low - 1e-9)


class _Oracle(Engine):
    """A fake engine that knows the labels: returns them, damaged in a known way."""

    backend = "fake"

    def __init__(self, labels: list[np.ndarray], damage: float) -> None:
        super().__init__()
        self.labels, self.damage = iter(labels), damage

    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        label = next(self.labels).copy()
        ones = np.flatnonzero(label == 13)  # car
        label.flat[ones[: int(len(ones) * self.damage)]] = 0  # -> road
        return InferResult(label[None])


def test_eval_reports_a_paired_interval(tmp_path: Path) -> None:
    from ocrnet.data.cityscapes import discover, read_label
    from ocrnet.data.synthetic import write_dataset
    from ocrnet.evaluate import evaluate

    write_dataset(tmp_path, train=1, val=6, size=(32, 64), workers=0, progress=False)
    truth = [read_label(s.label, s.label_format) for s in discover(tmp_path, "val")]
    runs = [evaluate(_Oracle(truth, d), tmp_path, scale=(64, 32), progress=False, workers=1)
            for d in (0.0, 0.5)]
    assert runs[0].per_image.shape == (6, 19, 19) and runs[0].image_ids == runs[1].image_ids
    np.testing.assert_array_equal(runs[1].per_image.sum(0), runs[1].confusion.matrix)
    ci = runs[1].delta_vs(runs[0])
    assert ci.delta == pytest.approx(100 * (runs[1].miou - runs[0].miou))
    assert ci.low <= ci.delta <= ci.high <= 0 and ci.images == 6


def test_cli_eval_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same graph as package and as bare ONNX: ΔmIoU 0 with a zero-width interval."""
    import json

    import _engine_helpers as h
    from ocrnet.cli import main

    out = tmp_path / "e.json"
    assert main(["eval", str(h.package("onnxruntime", "fp32")), "--data-root",
                 str(h.calib_root()), "--reference", str(h.onnx_file()), "--json", str(out),
                 "--no-progress"]) == 0
    assert f"ΔmIoU vs {h.onnx_file()}: +0.000 [+0.000, +0.000]" in capsys.readouterr().out
    ref = json.loads(out.read_text())["reference"]
    assert ref["delta_mIoU"] == 0 and ref["ci_low"] == ref["ci_high"] == 0
