"""The Engine contract, checked on every available backend x every precision it runs here.

Adding a backend (one file in `ocrnet/engines/`) or a precision adds rows to this matrix
without touching the test. Packages come from `_engine_helpers.package` (built once per session
and shared with the backend-specific tests), so a row costs an open and a few inferences.
"""

from __future__ import annotations

import numpy as np
import pytest

import _engine_helpers as h
from ocrnet.engines import available_backends, get_backend, open_model
from ocrnet.errors import BackendUnavailableError
from ocrnet.precision import Precision

# Label agreement with PyTorch fp32 on the random-weight model (near-ties are common there; the
# demo model is held to tighter bounds in test_quantize).
AGREEMENT = {"fp32": 0.9999, "half": 0.98, "int8": 0.9}


def _rows() -> list[object]:
    rows = []
    for backend in available_backends():
        cls = get_backend(backend)
        try:
            cls.require()
        except BackendUnavailableError:  # not installed here: nothing to check ...
            if h.IN_CI:  # ... except in CI, where a missing extra fails (its fp32 row)
                rows.append(pytest.param(backend, "fp32", id=f"{backend}-not-installed"))
            continue
        for precision in cls.runnable_precisions():
            marks = []
            if cls.source != "onnx":  # compiled from the checkpoint (AOTInductor): minutes
                marks.append(pytest.mark.slow)
            elif precision.quantized and precision is not Precision.INT8:
                # int8 with a half remainder: a calibration of its own each (~33 s here), and
                # test_precision already builds, opens and checks int8-bf16 in the fast suite
                marks.append(pytest.mark.slow)
            rows.append(pytest.param(backend, precision.value, marks=marks,
                                     id=f"{backend}-{precision.value}"))
    return rows


def _agreement_bound(precision: Precision) -> float:
    if precision.quantized:
        return AGREEMENT["int8"]
    return AGREEMENT["fp32"] if precision is Precision.FP32 else AGREEMENT["half"]


@pytest.mark.parametrize(("backend", "precision"), _rows())
def test_engine_contract(backend: str, precision: str) -> None:
    if get_backend(backend).source == "onnx":
        path = h.package(backend, precision)
    else:
        from ocrnet.build import build_package

        path = build_package(h.checkpoint(), h.workdir() / f"{backend}-{precision}",
                             backend=backend, precision=precision, shape=h.SHAPE).path
    labels, _ = h.reference()
    engine = open_model(path, trust_package=True)
    meta = engine.metadata
    assert meta["backend"] == backend and Precision.parse(meta["precision"]).value == precision
    assert list(meta["input_shape"]) == list(h.SHAPE)
    assert isinstance(meta["runtime"], dict)
    assert engine.native_scale == (max(h.SHAPE[2:]), min(h.SHAPE[2:]))

    out = engine.infer(h.batch())
    assert out.labels.shape == (1, *h.SHAPE[2:]) and out.labels.dtype == np.uint8
    assert (out.labels == labels).mean() >= _agreement_bound(Precision.parse(precision))
    # labels_at brings predictions back to each image's own size (nearest labels here)
    (back,) = engine.labels_at(h.batch(), [(h.SHAPE[2] * 2, h.SHAPE[3] * 2)], resize="labels")
    assert back.shape == (h.SHAPE[2] * 2, h.SHAPE[3] * 2)

    with engine:
        pass  # the context manager closes it
    with pytest.raises(RuntimeError, match="closed"):
        engine.infer(h.batch())
