"""`ocrnet run`: every step runs once, a rerun is all cache hits, a lost step reruns alone."""

from __future__ import annotations

import json

import pytest
import torch

import _engine_helpers as h
from ocrnet.data.synthetic import write_dataset
from ocrnet.errors import OcrnetError
from ocrnet.model import build_model
from ocrnet.pipeline import RunConfig, StepCache, run

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    write_dataset(root / "data", train=2, val=2, size=(64, 128), seed=5, workers=1,
                  progress=False)
    torch.manual_seed(0)
    torch.save({"state_dict": build_model("hr18s").state_dict()}, root / "model.pth")
    return root


def _config(inputs, out, **kw):
    base = dict(checkpoint=str(inputs / "model.pth"), data_root=str(inputs / "data"),
                out=str(out), backend="openvino", precisions=["fp32", "bfloat16"],
                scale=(128, 64), bench_duration=0.2, samples=1, progress=False)
    base.update(kw)
    return RunConfig(**base)


@h.needs("openvino", "bf16")  # the run's second precision
def test_run_writes_the_report_and_a_rerun_is_all_cached(inputs, tmp_path, monkeypatch):
    said: list[str] = []
    report = run(_config(inputs, tmp_path / "r"), say=said.append)
    assert [r["precision"] for r in report["results"]] == ["fp32", "fp32", "bf16"]
    assert [r["backend"] for r in report["results"]] == ["torch", "openvino", "openvino"]
    for row in report["results"]:
        assert 0 <= row["mIoU"] <= 100 and row["throughput_ips"] > 0
    # the fp32 package computes what PyTorch computes
    assert report["results"][1]["mIoU"] == pytest.approx(report["results"][0]["mIoU"], abs=0.01)
    out = tmp_path / "r"
    saved = json.loads((out / "report.json").read_text())
    assert saved["results"][0]["mIoU"] == report["results"][0]["mIoU"]
    assert "| bf16 | openvino |" in (out / "report.md").read_text()
    assert (out / "summary.png").stat().st_size > 0 and (out / "samples" / "sample_0.png").exists()
    ran = [line for line in said if line.startswith("[run]")]
    assert len(ran) == 1 + 2 + 3 + 1  # one export, two builds, three evals, one bench

    said.clear()
    run(_config(inputs, tmp_path / "r"), say=said.append)
    assert not [line for line in said if line.startswith("[run]")]

    # a killed run: the fp16 eval never finished, so only it runs again
    (out / "steps" / "eval-openvino-bf16.json").unlink()
    said.clear()
    run(_config(inputs, tmp_path / "r"), say=said.append)
    assert [line for line in said if line.startswith("[run]")] == ["[run] eval-openvino-bf16",
                                                                    "[run] bench"] or \
        [line for line in said if line.startswith("[run]")] == ["[run] eval-openvino-bf16"]

    # Regression: packages built by an older recipe (one shared export, no Winograd) were reused
    monkeypatch.setattr("ocrnet.pipeline.BUILD_RECIPE", "a newer recipe")
    said.clear()
    run(_config(inputs, tmp_path / "r"), say=said.append)
    ran = [line for line in said if line.startswith("[run]")]
    assert {"[run] build-openvino-fp32", "[run] build-openvino-bf16"} <= set(ran)


def test_changed_inputs_change_the_step_key():
    assert StepCache.key(step="eval", model="a") != StepCache.key(step="eval", model="b")
    assert StepCache.key(step="eval", model="a") == StepCache.key(step="eval", model="a")


def test_bad_requests_fail_before_any_work(inputs, tmp_path):
    with pytest.raises(OcrnetError, match="precision"):
        run(_config(inputs, tmp_path / "x", precisions=["fp8"]), say=lambda _m: None)
    with pytest.raises(OcrnetError, match="--data-root"):
        run(_config(inputs, tmp_path / "y", data_root=None), say=lambda _m: None)
    assert not (tmp_path / "x" / "packages").exists()
