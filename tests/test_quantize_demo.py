"""int8 and bf16 labels of the shipped demo model agree with fp32 eager (its own file, so that
`make test`'s workers run it beside test_quantize.py: both are minutes of calibration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import _engine_helpers as h
from ocrnet.engines import open_model

DEMO_SHAPE = (1, 3, 128, 256)  # half the demo scale: inside the range the model was trained on
EVAL_SHAPE = (1, 3, 256, 512)  # the demo model's evaluation scale


@pytest.mark.parametrize(("backend", "precision", "shape", "scenes", "bound"), [
    # bf16 keeps 8 mantissa bits: 99.94% (Winograd graph) at the scale the demo model is
    # evaluated at, 99.87% at half that scale, where it is less sure of itself (85.97-mIoU model;
    # the 80.71 one gave 99.92% / 99.85%). int8 here: 99.13% OpenVINO, 99.34% ONNX Runtime.
    pytest.param("openvino", "bf16", EVAL_SHAPE, 8, 0.999, marks=h.needs("openvino", "bf16")),
    ("openvino", "int8", DEMO_SHAPE, 3, 0.98),
    ("onnxruntime", "int8", DEMO_SHAPE, 3, 0.98),
])
def test_low_precision_labels_on_the_demo_model(tmp_path: Path, backend: str, precision: str,
                                                shape: tuple[int, ...], scenes: int,
                                                bound: float) -> None:
    """Labels agree with fp32 eager (bf16 >= 99.9%, int8 >= 98%) on generated street scenes.

    Only meaningful on trained weights, so this uses the shipped demo model. bf16 is built from
    the checkpoint, as users build (the Winograd graph); both int8 rows from one shared export
    of the plain graph, the one a checkpoint build exports for int8.
    """
    demo = h.demo_checkpoint()
    if demo is None:
        pytest.skip(f"no trained demo checkpoint in {h.DEMO} (random weights make low-precision "
                    "label agreement meaningless)")
    from ocrnet.build import build_package
    from ocrnet.data.synthetic import generate_scene
    from ocrnet.data.transforms import normalize

    if precision == "int8":
        source, options = h.demo_onnx(shape, ("labels",)), {"calib_count": 3}
    else:
        source, options = demo, {"shape": shape, "outputs": ["labels"], "calib_count": 32}
    pkg = build_package(source, tmp_path / "pkg", backend=backend, precision=precision,
                        calib_dir=h.calib_root(), **options)
    assert pkg.meta["outputs"] == ["labels"] and list(pkg.meta["input"]["shape"]) == list(shape)
    images = [generate_scene(100 + i, *shape[2:])[0] for i in range(scenes)]
    batch = np.stack([normalize(np.ascontiguousarray(rgb[:, :, ::-1])) for rgb in images])
    with open_model(demo) as ref, open_model(pkg.path) as engine:
        agree = np.mean([(engine.infer(x[None]).labels == ref.infer(x[None]).labels).mean()
                         for x in batch])
    assert agree >= bound, (backend, precision, agree)
