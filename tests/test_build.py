"""`ocrnet build`: the CLI, sources, manifests, and the errors users will meet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import _engine_helpers as h
from ocrnet.build import build_package
from ocrnet.cli import main
from ocrnet.errors import DataError, OcrnetError
from ocrnet.package import read_package, sha256_file


def test_cli_build_from_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ort"
    assert main(["build", str(h.onnx_file()), "--backend", "onnxruntime",
                 "--precision", "force_float32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "next: ocrnet bench" in printed
    meta = read_package(out).meta
    assert meta["precision"] == "fp32" and meta["backend"] == "onnxruntime"
    assert meta["input"]["shape"] == [1, 3, 64, 128] and meta["input"]["dynamic_axes"] == {}
    assert meta["source"]["sha256"] == sha256_file(h.onnx_file())
    assert meta["source"]["kind"] == "onnx"
    assert meta["source"]["checkpoint"]["path"] == str(h.checkpoint())  # from the export
    assert meta["model"] == {"variant": "hr18", "num_classes": 19}
    assert len(meta["classes"]) == 19 and len(meta["palette"]) == 19
    assert meta["preprocess"]["mean"] == [123.675, 116.28, 103.53]
    assert {"ocrnet", "onnxruntime", "torch"} <= set(meta["tools"])
    assert set(meta["files"]) == {"model.onnx", "layers.json"}  # layers: the profile map


def test_build_from_checkpoint_exports_first_labels_only(tmp_path: Path) -> None:
    """A checkpoint is exported first; and (regression) the manifest listed both outputs
    whatever the graph had. One build checks both (an export and a conversion each)."""
    from ocrnet.engines import open_model

    pkg = build_package(h.checkpoint("hr18s"), tmp_path / "ov", backend="openvino",
                        shape="1x3x64x128", outputs=["labels"])
    assert pkg.meta["source"]["kind"] == "checkpoint"
    assert pkg.meta["source"]["sha256"] == sha256_file(h.checkpoint("hr18s"))
    assert pkg.meta["model"]["variant"] == "hr18s"
    assert set(pkg.files) == {"model.xml", "model.bin", "layers.json"}  # layers: the profile map
    assert pkg.meta["outputs"] == ["labels"]
    with open_model(pkg.path) as engine:
        assert engine.infer(h.batch()).labels.shape == (1, 64, 128)
        with pytest.raises(OcrnetError, match="no logits output"):
            engine.infer(h.batch(), return_logits=True)


@pytest.mark.parametrize(("argv", "message"), [
    (["--backend", "openvno"], "unknown backend 'openvno' (did you mean 'openvino'?)"),
    (["--precision", "fp8"], "unknown precision 'fp8'"),
    (["--backend", "torch", "--precision", "int8"], "does not support precision 'int8'"),
    (["--backend", "torch"], "builds from a checkpoint (.pth), not from ONNX"),
    (["--precision", "int8"], "int8 needs calibration images"),
    (["--device", "cuda"], "cannot run on device 'cuda'"),
])
def test_cli_build_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               argv: list[str], message: str) -> None:
    out = tmp_path / "p"
    assert main(["build", str(h.onnx_file()), "--out", str(out), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") <= 2
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_calibration_dir_errors(tmp_path: Path) -> None:
    def build(calib: Path, **kw: object) -> None:
        build_package(h.onnx_file(), tmp_path / "p", backend="openvino", precision="int8",
                      calib_dir=calib, **kw)  # type: ignore[arg-type]

    with pytest.raises(DataError, match="does not exist"):
        build(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        build(tmp_path / "empty")
    with pytest.raises(OcrnetError, match="val split"):
        build(h.calib_root(), calib_split="val")
    bad = tmp_path / "bad" / "leftImg8bit" / "train" / "city"
    bad.mkdir(parents=True)
    (bad / "x_000000_000000_leftImg8bit.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode"):
        build(tmp_path / "bad")
    assert not (tmp_path / "p").exists()


def test_manifest_is_json_for_other_tools(tmp_path: Path) -> None:
    meta = json.loads((h.package("openvino", "fp32") / "ocrnet.json").read_text())
    assert meta["runtime"]["inference_precision_hint"] == "f32"
    assert meta["calibration"] is None
