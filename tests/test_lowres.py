"""`--outputs lowres`: the graph ends before the model's final resize and the engine labels the
1/4-resolution logits on the host (ocrnet.data.resize_argmax), as mmseg's resize and argmax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import _engine_helpers as h
from ocrnet.build import build_package
from ocrnet.data.transforms import logits_to_labels
from ocrnet.engines import open_model
from ocrnet.errors import OcrnetError
from ocrnet.export import export_onnx
from ocrnet.predict import predict
from ocrnet.work.modes import gives_logits


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_lowres_labels_are_the_argmax_of_torchs_resize(backend: str) -> None:
    """The labels are byte for byte the argmax of the full-size logits the engine returns,
    which are torch's resize of its low-resolution output: mmseg's path."""
    x = h.batch(0, n=1)
    ref_labels, ref_logits = h.reference()
    with open_model(h.lowres_package(backend)) as engine:
        assert engine.metadata["outputs"] == ["lowres"] and gives_logits(engine)
        plain = engine.infer(x)
        full = engine.infer(x, return_logits=True)
        back = engine.labels_at(x, [(96, 200)])
    assert plain.labels.dtype == np.uint8 and plain.labels.shape == (1, 64, 128)
    assert full.logits is not None and full.logits.shape == (1, 19, 64, 128)
    np.testing.assert_array_equal(plain.labels, full.labels)
    np.testing.assert_array_equal(full.labels, full.logits.argmax(1).astype(np.uint8))
    np.testing.assert_array_equal(back[0], logits_to_labels(full.logits[0], (96, 200)))
    assert h.rel_l2(full.logits, ref_logits) < 1e-4
    assert (full.labels == ref_labels).mean() > 0.99


def test_lowres_package_predicts_with_confidence(tmp_path: Path) -> None:
    """Confidence maps need logits: a lowres package gives them (resized on the host)."""
    image = next((h.calib_root() / "leftImg8bit" / "train").rglob("*.png"))
    got = predict(h.lowres_package("openvino"), [image], tmp_path, confidence=True,
                  progress=False)
    assert Path(got[0]["confidence"]).is_file() and Path(got[0]["labels"]).is_file()


def test_lowres_stands_alone_and_needs_an_onnx_backend(tmp_path: Path) -> None:
    with pytest.raises(OcrnetError, match="lowres stands alone"):
        export_onnx(h.checkpoint(), tmp_path / "x.onnx", shape=h.SHAPE,
                    outputs=["lowres", "labels"])
    with pytest.raises(OcrnetError, match="backend 'torch' runs the PyTorch model"):
        build_package(h.checkpoint(), tmp_path / "t", backend="torch", outputs=["lowres"])
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "t").exists()


def test_select_outputs_cuts_an_export_without_exporting_again(tmp_path: Path) -> None:
    """The graphs differ only after the classifier: a labels-only cut gives the shared
    export's labels, and a graph that has no final Resize cannot be cut."""
    from ocrnet.export import select_outputs

    cut = select_outputs(h.onnx_file(), tmp_path / "labels.onnx", ["labels"])
    pkg = build_package(cut, tmp_path / "ort", backend="onnxruntime")
    assert pkg.meta["outputs"] == ["labels"]
    with open_model(pkg.path) as engine, open_model(h.onnx_file()) as whole:
        np.testing.assert_array_equal(engine.infer(h.batch()).labels,
                                      whole.infer(h.batch()).labels)
    with pytest.raises(OcrnetError, match="no `logits` output made by a Resize"):
        select_outputs(h.lowres_onnx(), tmp_path / "again.onnx", ["labels"])
