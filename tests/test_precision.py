"""Precision names, and int8 with a half-precision remainder (int8-bf16 / int8-fp16) in OpenVINO."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import _engine_helpers as h
from ocrnet.engines import get_backend, open_model
from ocrnet.errors import OcrnetError, PackageError
from ocrnet.precision import Precision


@pytest.mark.parametrize(("name", "want"), [
    ("int8", Precision.INT8), ("INT8-BF16", Precision.INT8_BF16),
    ("int8_bf16", Precision.INT8_BF16),
    ("int8-fp16", Precision.INT8_FP16), ("int8-fp32", Precision.INT8),
    # The vendor's name means int8 convolutions with a float16 remainder, not plain int8.
    ("qint8_mixed_float16", Precision.INT8_FP16), ("force_float16", Precision.FP16),
])
def test_precision_names_and_aliases(name: str, want: Precision) -> None:
    assert Precision.parse(name) is want


def test_precision_remainders() -> None:
    assert [p.quantized for p in Precision] == [False, False, False, True, True, True]
    assert Precision.INT8.remainder is Precision.FP32
    assert Precision.INT8_BF16.remainder is Precision.BF16
    assert Precision.BF16.remainder is Precision.BF16
    with pytest.raises(OcrnetError, match="did you mean 'int8-bf16'"):
        Precision.parse("int8-bf15")
    with pytest.raises(OcrnetError, match="does not support precision 'int8-bf16'"):
        get_backend("onnxruntime").check_precision("int8-bf16")


def _ov_caps() -> set[str]:
    import openvino as ov

    return set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


@pytest.mark.skipif("BF16" not in _ov_caps(), reason="this CPU has no native bf16 for OpenVINO")
def test_int8_bf16_package_builds_opens_and_agrees(tmp_path: Path) -> None:
    pkg = h.package("openvino", "int8-bf16")
    meta = json.loads((pkg / "ocrnet.json").read_text())
    assert meta["precision"] == "int8-bf16"
    assert meta["runtime"]["inference_precision_hint"] == "bf16"
    assert meta["runtime"]["remainder"] == "bf16" and meta["calibration"]["count"] == 3
    labels, _ = h.reference()
    with open_model(pkg) as engine:
        assert engine.metadata["inference_precision_applied"] == "bf16"
        got = engine.infer(h.batch()).labels
    with open_model(h.package("openvino", "int8")) as engine:
        assert engine.metadata["inference_precision_applied"] == "f32"
        plain = engine.infer(h.batch()).labels
    # Random weights: sanity bounds (the demo model's numbers are in benchmarks/RESULTS.md).
    assert (got == labels).mean() >= 0.9 and (got == plain).mean() >= 0.9
    # The runnable list follows the hardware, so `ocrnet run` picks int8-bf16 by default here.
    assert Precision.INT8_BF16 in get_backend("openvino").runnable_precisions()

    # A manifest whose hint was edited must not run bf16 while reporting another precision.
    edited = tmp_path / "edited"
    shutil.copytree(pkg, edited)
    meta["precision"] = "int8"
    (edited / "ocrnet.json").write_text(json.dumps(meta))
    with pytest.raises(PackageError, match="records inference precision hint 'bf16'"):
        open_model(edited)


def test_int8_fp16_without_native_fp16_suggests_int8_bf16(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    """Where the plugin would run bf16 for f16, the build stops before calibrating."""
    from ocrnet.build import build_package
    from ocrnet.engines import openvino

    monkeypatch.setattr(openvino, "_applied_hint", lambda compiled: "bf16")
    with pytest.raises(OcrnetError, match=r"runs bf16 when f16 is asked.*int8-bf16"):
        build_package(h.onnx_file(), tmp_path / "p", backend="openvino",
                      precision="qint8_mixed_float16", calib_dir=h.calib_root(), calib_count=3)
    assert not (tmp_path / "p").exists()
