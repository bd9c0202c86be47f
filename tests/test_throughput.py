"""OpenVINO's throughput mode: K requests in flight give the labels one request gives."""

from __future__ import annotations

import numpy as np

import _engine_helpers as h
from ocrnet.engines import open_model


def test_openvino_streams_keep_labels_identical() -> None:
    pkg = h.package("openvino", "fp32")
    x = [h.batch(seed) for seed in range(3)]
    with open_model(pkg) as engine:
        want = [engine.infer(b).labels for b in x]
    with open_model(pkg, streams=2) as engine:
        assert engine.metadata["streams"] == 2
        futures = [engine.infer_async(b) for b in x]  # the third waits for a free request
        got = [f.result(timeout=120).labels for f in futures]
        assert np.array_equal(engine.infer(x[0]).labels, want[0])  # sync still works
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.uint8 and np.array_equal(g, w)
