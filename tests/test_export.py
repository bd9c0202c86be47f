"""ONNX export: a valid, clean graph that matches PyTorch; uint8 input; dynamic axes."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

import _engine_helpers as h
from ocrnet.errors import OcrnetError
from ocrnet.export import export_onnx, parse_shape, verify_onnx


def test_static_export_is_clean_and_exact() -> None:
    from ocrnet.model import model_from_checkpoint

    path = h.onnx_file()
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and "Shape" not in ops  # folded, static sizes
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["labels", "logits"]
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    report = verify_onnx(model_from_checkpoint(h.checkpoint()), path, h.SHAPE)
    assert report["label_agreement"] >= 0.9999
    assert report["checks"][0]["logits_rel_l2"] <= 1e-5


def test_uint8_input_labels_only(tmp_path: Path) -> None:
    result = export_onnx(h.checkpoint("hr18s"), tmp_path / "u8.onnx", shape="1x3x64x128",
                         uint8_input=True, outputs=["labels"], verify=True)
    proto = onnx.load(str(result.path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert result.input_shape == [1, 64, 128, 3]
    assert [o.name for o in proto.graph.output] == ["labels"]
    assert result.verify["label_agreement"] >= 0.9999


# Regression: HRNet's fuse upsampling once computed its size as int(h * float(factor)), which
# export froze to the example's size, so other H/W gave wrong logits.
@pytest.mark.slow  # ~45 s: a second, dynamic export
def test_dynamic_export_is_verified_at_another_shape(tmp_path: Path) -> None:
    result = export_onnx(h.checkpoint("hr18s"), tmp_path / "dyn.onnx", shape="1x3x64x128",
                         dynamic=True, verify=True)
    assert isinstance(result.input_shape[0], str) and isinstance(result.input_shape[2], str)
    shapes = [c["shape"] for c in result.verify["checks"]]
    assert shapes == [[1, 3, 64, 128], [2, 3, 96, 160]]
    assert result.verify["label_agreement"] >= 0.9999


def test_bad_arguments_fail_before_exporting(tmp_path: Path) -> None:
    assert parse_shape("2x3x32x64") == (2, 3, 32, 64)
    assert parse_shape("32x64") == (1, 3, 32, 64)  # HxW: short for one RGB image
    for bad in ("1x1x64x64", "64x64x3", "1x3xAx64", "0x3x64x64"):
        with pytest.raises(OcrnetError, match="NxCxHxW"):
            parse_shape(bad)
    with pytest.raises(OcrnetError, match="unknown output"):
        export_onnx(h.checkpoint(), tmp_path / "x.onnx", shape=h.SHAPE, outputs=["probs"])
    with pytest.raises(OcrnetError, match="opset 13"):
        export_onnx(h.checkpoint(), tmp_path / "x.onnx", shape=h.SHAPE, opset=13)
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ocrnet.cli import main

    # The CLI is a thin layer: argument errors come back as exit 1 and one line.
    code = main(["export", str(h.checkpoint()), "--out", str(tmp_path / "m.onnx"),
                 "--shape", "1x1x64x64"])
    assert code == 1
    assert "NxCxHxW" in capsys.readouterr().err
