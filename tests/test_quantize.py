"""int8: calibration data, options, the sensitive parts, and valid packages from both backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import _engine_helpers as h
from ocrnet.engines import open_model
from ocrnet.errors import DataError, OcrnetError
from ocrnet.package import read_package
from ocrnet.quantize import (
    CalibrationImages,
    calibration_files,
    check_int8_options,
    tensor_groups,
)


def test_calibration_uses_train_split_evenly() -> None:
    files = calibration_files(h.calib_root(), count=2)
    assert len(files) == 2 and all("/train/" in str(f) for f in files)
    assert files[0] != files[1]
    batches = list(CalibrationImages(files, (64, 128)))
    assert [b.shape for b in batches] == [(1, 3, 64, 128)] * 2
    assert batches[0].dtype == np.float32 and abs(float(batches[0].mean())) < 3


def test_calibration_fills_a_static_batch() -> None:
    """Regression: a batch-8 int8 build fed (1, 3, H, W) images to a static (8, 3, H, W) graph."""
    files = calibration_files(h.calib_root(), count=3)
    single = list(CalibrationImages(files, (64, 128)))
    batches = list(CalibrationImages(files, (64, 128), batch=2))
    assert len(CalibrationImages(files, (64, 128), batch=2)) == 2
    assert [b.shape for b in batches] == [(2, 3, 64, 128)] * 2
    np.testing.assert_array_equal(batches[0], np.concatenate(single[:2]))
    np.testing.assert_array_equal(batches[1], np.concatenate([single[2], single[0]]))


def test_calibration_aspect_mismatch(tmp_path: Path) -> None:
    files = calibration_files(h.calib_root(), count=1)
    with pytest.raises(DataError, match="not the package's 64x64"):
        list(CalibrationImages(files, (64, 64)))


def test_int8_options_are_validated() -> None:
    assert check_int8_options("onnxruntime")["calib_method"] == "minmax"
    assert check_int8_options("openvino", keep_float=["none"])["keep_float"] == ()
    with pytest.raises(OcrnetError, match="did you mean 'entropy'"):
        check_int8_options("onnxruntime", calib_method="entropi")
    with pytest.raises(OcrnetError, match="valid: mixed, performance"):
        check_int8_options("openvino", calib_method="minmax")
    with pytest.raises(OcrnetError, match="did you mean 'attention'"):
        check_int8_options("openvino", keep_float=["atention"])


def test_groups_respect_the_memory_budget() -> None:
    model = onnx.shape_inference.infer_shapes(onnx.load(str(h.onnx_file())))
    infos = {v.name: v for v in model.graph.value_info}
    names = list(infos)[:50]
    groups = list(tensor_groups(names, infos, h.SHAPE, budget=1 << 20))
    assert [n for g in groups for n in g] == names and len(groups) > 1


def _check_int8(pkg: Path, kept: int) -> None:
    labels, logits = h.reference()
    with open_model(pkg) as engine:
        out = engine.infer(h.batch(), return_logits=True)
    meta = read_package(pkg).meta
    assert meta["precision"] == "int8"
    assert meta["calibration"]["count"] == 3 and len(meta["calibration"]["kept_nodes"]) == kept
    # Random weights: only a sanity bound; the demo-model test below holds int8 to 98%.
    assert (out.labels == labels).mean() >= 0.9
    assert h.rel_l2(out.logits, logits) < 0.15


def test_openvino_int8_package() -> None:
    pkg = h.package("openvino", "int8")
    _check_int8(pkg, kept=5)  # 2 softmax + 3 matmul of the OCR attention
    calib = read_package(pkg).meta["calibration"]
    assert calib["preset"] == "mixed" and calib["bias_correction"] == "fast"


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_onnxruntime_int8_package(method: str) -> None:
    pkg = h.package("onnxruntime", "int8", calib_method=method)
    _check_int8(pkg, kept=5)
    model = onnx.load(str(pkg / "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_int8_at_a_static_batch_is_calibrated_at_batch_one(tmp_path: Path, backend: str
                                                            ) -> None:
    """Regression: batch-8 int8 at 1024x2048 could not be built (NNCF wanted 80 GB, and a
    batch-1 graph cannot be reshaped). Now the export keeps the batch symbolic for calibration
    at batch 1 and the package is fixed to the batch asked for."""
    from ocrnet.build import build_package

    shape = (2, *h.SHAPE[1:])
    pkg = build_package(h.checkpoint(), tmp_path / "pkg", backend=backend, precision="int8",
                        shape=shape, calib_dir=h.calib_root(), calib_count=3)
    assert pkg.meta["input"]["shape"] == list(shape)
    assert pkg.meta["calibration"]["calibrated_at_batch"] == 1
    assert pkg.meta["calibration"]["count"] == 3
    assert pkg.meta["graph_rewrites"] == {}  # no Winograd under int8: it would quantize transforms
    labels, _ = h.reference(n=2)
    with open_model(pkg.path) as engine:
        out = engine.infer(h.batch(n=2))
        assert out.labels.shape == labels.shape
        assert (out.labels == labels).mean() >= 0.9
        with pytest.raises(OcrnetError, match="shape"):
            engine.infer(h.batch(n=1))


def test_onnxruntime_int8_runs_every_convolution_in_int8(tmp_path: Path) -> None:
    """Regression: int8 activations left 181 of 316 convolutions as float Conv after ORT's
    QDQ fusion, so "int8" ran at fp32 speed. uint8 activations fuse them all."""
    import onnxruntime as ort

    pkg = h.package("onnxruntime", "int8", calib_method="minmax")
    assert read_package(pkg).meta["calibration"]["activations"] == "uint8"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "fused.onnx")
    ort.InferenceSession(str(pkg / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "fused.onnx")).graph.node]
    assert ops.count("QLinearConv") == 316 and "Conv" not in ops


def test_keep_float_parts_are_found() -> None:
    from ocrnet.quantize import _onnx_nodes, _pick

    nodes = _onnx_nodes(onnx.load(str(h.onnx_file())))
    assert len(_pick(nodes, ["first_conv"], 19)) == 1
    assert len(_pick(nodes, ["classifiers"], 19)) == 2  # aux (soft regions) + final conv_seg
    assert len(_pick(nodes, ["attention"], 19)) == 5
