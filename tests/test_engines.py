"""Every backend x precision: build from the tiny export, open, and agree with PyTorch fp32."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import _engine_helpers as h
from ocrnet.engines import available_backends, get_backend, open_model
from ocrnet.errors import BackendUnavailableError, OcrnetError, PackageError


def _ov_has(cap: str) -> bool:
    import openvino as ov

    return cap in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_backends_are_discovered_by_module() -> None:
    assert available_backends() == ["onnxruntime", "openvino", "torch"]
    assert get_backend("openvino").backend == "openvino"
    with pytest.raises(OcrnetError, match=r"did you mean 'openvino'.*valid: onnxruntime"):
        get_backend("openvno")


def test_missing_backend_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(BackendUnavailableError, match=r"pip install 'ocrnet\[openvino\]'"):
        get_backend("openvino").require()


def test_eager_checkpoint_engine() -> None:
    x = h.batch()
    with open_model(h.checkpoint()) as engine:
        out = engine.infer(x, return_logits=True)
        assert engine.metadata["backend"] == "torch"
        assert engine.metadata["runtime"]["mode"] == "eager"
    assert out.labels.shape == (1, 64, 128) and out.labels.dtype == np.uint8
    assert out.logits.shape == (1, 19, 64, 128) and out.logits.dtype == np.float32
    np.testing.assert_array_equal(out.labels, out.logits.argmax(1))
    with pytest.raises(RuntimeError, match="closed"):
        engine.infer(x)


@pytest.mark.slow  # ~15 s: oneDNN's first bf16 run on this CPU
def test_eager_bf16() -> None:
    labels, logits = h.reference()
    with open_model(h.checkpoint(), precision="bfloat16") as engine:
        out = engine.infer(h.batch(), return_logits=True)
    assert (out.labels == labels).mean() >= 0.98
    assert h.rel_l2(out.logits, logits) < 0.03


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_fp32_package_matches_pytorch(backend: str) -> None:
    labels, logits = h.reference(seed=1, n=1)
    with open_model(h.package(backend, "fp32")) as engine:
        out = engine.infer(h.batch(seed=1), return_logits=True)
        only_labels = engine.infer(h.batch(seed=1))
        # bench counts FLOPs from this (it showed no GFLOP/s for packages without it)
        assert engine.metadata["model"] == {"variant": "hr18", "num_classes": 19}
    assert h.rel_l2(out.logits, logits) <= 1e-5
    assert (out.labels == labels).mean() >= 0.9999
    assert only_labels.logits is None
    np.testing.assert_array_equal(only_labels.labels, out.labels)


def test_openvino_precision_hint_is_explicit_and_recorded() -> None:
    # The CPU plugin defaults to bf16 on AVX-512 BF16 machines; fp32 must really be f32.
    engine = open_model(h.package("openvino", "fp32"))
    assert engine.metadata["runtime"]["inference_precision_hint"] == "f32"
    assert engine.metadata["inference_precision_applied"] == "f32"
    engine.close()


@pytest.mark.skipif(not _ov_has("BF16"), reason="this CPU has no native bf16 for OpenVINO")
def test_openvino_bf16() -> None:
    labels, logits = h.reference()
    with open_model(h.package("openvino", "bf16")) as engine:
        assert engine.metadata["inference_precision_applied"] == "bf16"
        out = engine.infer(h.batch(), return_logits=True)
    # Random weights make near-ties common: 99.1% here; the demo model is held to 99.9%.
    assert (out.labels == labels).mean() >= 0.98
    assert h.rel_l2(out.logits, logits) < 0.03


def test_openvino_fp16_never_silently_becomes_bf16(tmp_path: Path) -> None:
    from ocrnet.build import build_package

    if _ov_has("FP16"):
        pkg = build_package(h.onnx_file(), tmp_path / "p", backend="openvino", precision="fp16")
        with open_model(pkg.path) as engine:
            assert engine.metadata["inference_precision_applied"] == "f16"
    else:
        # bf16 where the CPU has it (the silent swap this refuses), else f32; the advice names a
        # precision this CPU runs
        instead = "bf16" if _ov_has("BF16") else "fp32"
        with pytest.raises(OcrnetError, match=rf"runs (bf16|f32) when f16 is asked.*"
                                              rf"--precision {instead}"):
            build_package(h.onnx_file(), tmp_path / "p", backend="openvino", precision="fp16")
        assert not (tmp_path / "p").exists()


def test_onnxruntime_fp16_refuses_cpu() -> None:
    pkg = h.package("onnxruntime", "fp16")
    with pytest.raises(OcrnetError, match="CUDA only"):
        open_model(pkg)


def test_static_shape_and_devices_are_checked() -> None:
    with open_model(h.package("onnxruntime", "fp32")) as engine, \
            pytest.raises(OcrnetError, match="built for input 1x3x64x128"):
        engine.infer(np.zeros((1, 3, 32, 64), np.float32))
    with pytest.raises(OcrnetError, match="cannot run on device 'cuda'"):
        open_model(h.package("openvino", "fp32"), device="cuda")


def test_open_bare_onnx() -> None:
    labels, _ = h.reference()
    with open_model(h.onnx_file()) as engine:
        assert (engine.infer(h.batch()).labels == labels).mean() >= 0.9999


def test_package_for_unknown_backend(tmp_path: Path) -> None:
    from ocrnet.package import PackageWriter

    with PackageWriter(tmp_path / "p") as writer:
        writer.commit({"backend": "tensorrt", "precision": "fp16"})
    with pytest.raises(PackageError, match="backend 'tensorrt'"):
        open_model(tmp_path / "p")


def test_unsupported_precision_lists_valid() -> None:
    with pytest.raises(OcrnetError, match="valid: fp32, fp16, bf16"):
        get_backend("torch").check_precision("int8")
    with pytest.raises(OcrnetError, match="unknown precision 'fp8'"):
        get_backend("openvino").check_precision("fp8")


@pytest.mark.slow
def test_torch_aotinductor_package(tmp_path: Path) -> None:
    """~4 min on 2 cores (C++ compile): slow-marked."""
    from ocrnet.build import build_package

    labels, logits = h.reference()
    pkg = build_package(h.checkpoint(), tmp_path / "aoti", backend="torch", precision="fp32",
                        shape=h.SHAPE)
    with pytest.raises(OcrnetError, match="--trust-package"):
        open_model(pkg.path)  # native code: never loaded without being asked
    with open_model(pkg.path, trust_package=True) as engine:
        out = engine.infer(h.batch(), return_logits=True)
    assert h.rel_l2(out.logits, logits) <= 1e-5
    assert (out.labels == labels).mean() >= 0.9999


def test_runnable_precisions_follow_the_hardware() -> None:
    """`ocrnet run` defaults to these: never a precision the plugin would silently replace."""
    from ocrnet.engines import get_backend
    from ocrnet.precision import Precision

    runnable = get_backend("openvino").runnable_precisions("cpu")
    assert (Precision.FP16 in runnable) == _ov_has("FP16")
    assert (Precision.BF16 in runnable) == _ov_has("BF16")
    assert Precision.FP32 in runnable and Precision.INT8 in runnable
    assert Precision.FP16 not in get_backend("onnxruntime").runnable_precisions("cpu")
