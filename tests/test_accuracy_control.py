"""int8 within an mIoU budget (`build --max-drop`): NNCF accuracy control on held-out images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import _engine_helpers as h
from ocrnet.errors import OcrnetError

SIZE = (32, 64)


def _tiny_graph(path: Path, seed: int = 0) -> Path:
    """conv 3->16 -> relu -> conv 16->16 -> relu -> conv 16->19 = logits, argmax = labels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    shapes = [(16, 3, 3, 3), (16, 16, 3, 3), (19, 16, 1, 1)]
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, s).astype(np.float32), f"w{i}")
             for i, s in enumerate(shapes)]
    nodes = [helper.make_node("Conv", ["input", "w0"], ["c0"], pads=[1, 1, 1, 1], name="conv0"),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Conv", ["r0", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["logits"], name="conv2"),
             helper.make_node("ArgMax", ["logits"], ["am"], axis=1, keepdims=0),
             helper.make_node("Cast", ["am"], ["labels"], to=TensorProto.UINT8)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, *SIZE])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, *SIZE]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 19, *SIZE])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _data(model: object, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Images with the float model's own labels: its mIoU is 100, so any flip is a drop."""
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        x = rng.normal(0, 1, (1, 3, *SIZE)).astype(np.float32)
        items.append((x, np.asarray(compiled(x)["labels"])[0]))
    return items


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, list, list]:
    import openvino as ov

    model = ov.convert_model(str(_tiny_graph(tmp_path_factory.mktemp("ac") / "tiny.onnx")))
    calibration = [x for x, _ in _data(model, 4, seed=1)]
    return model, calibration, _data(model, 4, seed=2)


def test_tight_budget_reverts_and_is_met(tiny: tuple[object, list, list]) -> None:
    from ocrnet.engines._openvino_quantize import quantize_within

    model, calibration, holdout = tiny
    _, summary = quantize_within(model, calibration, holdout, max_drop=0.0, keep_float=())
    ac = summary["accuracy_control"]
    assert ac["float_mIoU"] == 100.0  # labels are the float model's own
    assert ac["reverted_ops"], "a zero budget with int8 flips must revert something"
    assert ac["met"] and ac["drop"] <= 0.0
    assert summary["algorithm"] == "nncf.quantize_with_accuracy_control"


def test_loose_budget_reverts_nothing(tiny: tuple[object, list, list]) -> None:
    from ocrnet.engines._openvino_quantize import quantize_within

    model, calibration, holdout = tiny
    _, summary = quantize_within(model, calibration, holdout, max_drop=100.0, keep_float=())
    ac = summary["accuracy_control"]
    assert ac["reverted_ops"] == [] and ac["met"] and ac["max_drop"] == 100.0


def test_miou_validator_is_exact_not_a_mean_of_images() -> None:
    """Two images, class 0 only in the first, class 1 only in the second: the summed matrix
    gives IoU 0.5 for class 1, the per-image mean would give 0.75."""
    from ocrnet.engines._openvino_quantize import miou_validator

    class Out:
        def __init__(self, name: str) -> None:
            self.name = name

        def get_names(self) -> set[str]:
            return {self.name}

    class Compiled:
        def __init__(self) -> None:
            self.outputs = [Out("labels")]

        def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
            return {"labels": x.astype(np.uint8)}

    a_pred, a_true = np.array([[[0, 0]]]), np.array([[0, 0]])
    b_pred, b_true = np.array([[[1, 0]]]), np.array([[1, 1]])
    miou, per_image = miou_validator(19)(Compiled(), [(a_pred, a_true), (b_pred, b_true)])
    # class 0: inter 2, union 3 -> 2/3; class 1: inter 1, union 2 -> 1/2
    assert miou == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert per_image == [100.0, pytest.approx(100 * (0 / 1 + 1 / 2) / 2)]


def test_max_drop_is_refused_where_it_cannot_work(tmp_path: Path) -> None:
    from ocrnet.build import build_package

    calib = {"calib_dir": h.calib_root(), "calib_count": 2}
    with pytest.raises(OcrnetError, match="NNCF's ONNX backend has accuracy control"):
        build_package(h.onnx_file(), tmp_path / "a", backend="onnxruntime", precision="int8",
                      max_drop=0.1, **calib)
    with pytest.raises(OcrnetError, match="is an int8 budget"):
        build_package(h.onnx_file(), tmp_path / "b", backend="openvino", precision="bf16",
                      max_drop=0.1)
    with pytest.raises(OcrnetError, match="must be >= 0"):
        build_package(h.onnx_file(), tmp_path / "c", backend="openvino", precision="int8",
                      max_drop=float("nan"), **calib)


def test_holdout_is_disjoint_from_calibration() -> None:
    from ocrnet.quantize import calibration_files, holdout_samples

    files = calibration_files(h.calib_root(), count=2)
    held = holdout_samples(h.calib_root(), count=5, exclude=files)
    assert held and not {s.image for s in held} & set(files)
    assert all("/train/" in str(s.image) for s in held)
    with pytest.raises(OcrnetError, match="val split"):
        holdout_samples(h.calib_root(), split="val")


@pytest.mark.slow
def test_demo_model_within_budget(tmp_path: Path) -> None:
    """The demo model, quantized attention included, through `build_package --max-drop`."""
    from ocrnet.build import build_package
    from ocrnet.data.synthetic import write_dataset

    ckpt = h.demo_checkpoint()
    if ckpt is None:
        pytest.skip("demo model not bundled")
    root = tmp_path / "data"
    write_dataset(root, train=10, val=1, size=(128, 256), workers=0, progress=False)
    pkg = build_package(ckpt, tmp_path / "pkg", backend="openvino", precision="int8",
                        shape="1x3x128x256", calib_dir=root, calib_count=4, holdout_count=6,
                        keep_float=["none"], max_drop=0.1)
    ac = pkg.meta["calibration"]["accuracy_control"]
    assert ac["met"] and ac["drop"] <= 0.1 and ac["holdout_count"] == 6


def test_cli_max_drop_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ocrnet.cli import main

    argv = ["build", str(h.onnx_file()), "--out", str(tmp_path / "p"), "--calib-dir",
            str(h.calib_root()), "--max-drop", "0.1"]
    assert main([*argv, "--backend", "onnxruntime", "--precision", "int8"]) == 1
    assert "build --backend openvino --precision int8 --max-drop X" in capsys.readouterr().err
    assert main([*argv, "--precision", "fp32"]) == 1
    assert "is an int8 budget" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
