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


def test_run_slide_builds_at_the_crop_and_evaluates_in_slide(tmp_path, monkeypatch):
    """`ocrnet run --mode slide` through the CLI: the packages are built at the crop, every eval
    step runs slide, the samples too, and report.json records the mode with its crop and the
    stride it chose. The export and build steps hand over the session's artifacts (hr18 at
    1x3x64x128) instead of exporting the checkpoint again (~25 s each here), and the bench step
    (a warm-up second and a process per model, not what this test is about) is stubbed."""
    import shutil

    from ocrnet.cli import main
    from ocrnet.package import read_package

    write_dataset(tmp_path / "data", train=0, val=1, size=(64, 192), seed=3, workers=0,
                  progress=False)
    asked: list[tuple[str, list[int]]] = []

    def export(checkpoint, onnx_path, shape, trust_checkpoint):
        asked.append(("export", list(shape)))
        shutil.copy(h.onnx_file(), onnx_path)
        return {"path": str(onnx_path), "label_agreement": 1.0, "checks": {}}

    def build(source, pkg, cfg, precision, shape, calib_dir):
        asked.append(("build", list(shape)))
        shutil.copytree(h.package("openvino", "fp32"), pkg)
        return {"package": str(pkg), "runtime": read_package(pkg).meta.get("runtime")}

    def bench(paths, shape, cfg):
        asked.append(("bench", list(shape)))
        return {"results": [{"model": str(p), "batch": 1, "latency_ms": {"p50": 1.0},
                             "throughput_ips": 1.0} for p in paths], "machine": {}}

    monkeypatch.setattr("ocrnet.pipeline.steps._export", export)
    monkeypatch.setattr("ocrnet.pipeline.steps._build", build)
    monkeypatch.setattr("ocrnet.pipeline.steps._bench", bench)
    out = tmp_path / "run"
    code = main(["run", "--checkpoint", str(h.checkpoint()), "--data-root",
                 str(tmp_path / "data"), "--out", str(out), "--precisions", "fp32",
                 "--scale", "192x64", "--mode", "slide", "--crop", "64x128",
                 "--resamples", "10", "--no-progress"])
    assert code == 0
    assert asked == [("export", [1, 3, 64, 128]), ("build", [1, 3, 64, 128]),
                     ("bench", [1, 3, 64, 128])]
    report = json.loads((out / "report.json").read_text())
    # a 64x192 image in 64x128 tiles every 42x85 (two thirds of the crop): two tiles
    assert report["mode"] == {"mode": "slide", "crop": "64x128", "stride": "42x85"}
    assert report["input_shape"] == [1, 3, 64, 128] and report["samples"] == 1
    evals = sorted((out / "steps").glob("eval-*.json"))
    assert len(evals) == 2  # PyTorch eager and the openvino fp32 package
    for step in evals:
        result = json.loads(step.read_text())["result"]
        assert (result["mode"], result["crop"], result["stride"]) == ("slide", "64x128", "42x85")
