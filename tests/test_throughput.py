"""OpenVINO's throughput mode: K requests in flight give the labels one request gives, in the
engine, and in predict and eval (K images in flight through the kernels)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import _engine_helpers as h
from ocrnet.engines import open_model, stream_count
from ocrnet.errors import ArgumentError, OcrnetError
from ocrnet.evaluate import evaluate
from ocrnet.machine import usable_cores
from ocrnet.predict import predict
from ocrnet.work.kernels import in_flight


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


# --- predict and eval with K images in flight (LocalExecutor + kernels) ------------------------
def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".png"}


@pytest.mark.parametrize("lowres", [False, True])
def test_predict_and_eval_give_the_same_bytes_with_1_and_2_streams(tmp_path: Path,
                                                                    lowres: bool) -> None:
    """Two images in flight through OpenVINO's throughput mode write the same PNGs and score
    the same matrices as one at a time, for the in-graph labels and the host-side ones. The
    images are twice the package's size: each is resized to it and its prediction back (the
    banded resize-then-argmax) on the stream threads."""
    from ocrnet.data.synthetic import write_dataset

    pkg = h.lowres_package("openvino") if lowres else h.package("openvino", "fp32")
    root = tmp_path / "data"
    write_dataset(root, train=2, val=0, size=(128, 256), workers=0, progress=False)
    images = sorted((root / "leftImg8bit" / "train").rglob("*.png"))
    outs = {}
    for k in (1, 2):
        predict(pkg, images, tmp_path / f"p{k}", streams=k, color=True, progress=False)
        outs[k] = _files(tmp_path / f"p{k}")
    assert len(outs[1]) == 2 * len(images) and outs[1] == outs[2]
    one, two = (evaluate(pkg, root, "train", streams=k, progress=False) for k in (1, 2))
    assert one.num_images == two.num_images == len(images)
    np.testing.assert_array_equal(one.per_image, two.per_image)
    assert one.confusion.matrix.tolist() == two.confusion.matrix.tolist()


def test_stream_count_defaults_and_refusals(tmp_path: Path) -> None:
    ov, ort = h.package("openvino", "fp32"), h.package("onnxruntime", "fp32")
    assert stream_count(ov, None) == (2 if usable_cores() >= 2 else 1)
    assert stream_count(ov, None, threads=1) == 1 and stream_count(ov, 3) == 3
    assert stream_count(ort, None) == 1 and stream_count(h.checkpoint(), None) == 1
    with pytest.raises(OcrnetError, match=r"--streams 2: .*no throughput mode"):
        stream_count(ort, 2)
    with open_model(ov, streams=2) as engine:
        assert stream_count(engine, None) == 2
    with pytest.raises(OcrnetError, match="--streams 2 applies to runs in this process"):
        predict(ov, [tmp_path / "x.png"], tmp_path / "out", streams=2, ray="local")
    with pytest.raises(ArgumentError, match="streams must be an integer >= 1"):
        evaluate(ov, tmp_path, streams=0)


def test_in_flight_keeps_order_and_at_most_k_batches() -> None:
    """K threads predict, the results come back in input order, and no more than K batches
    are held at once (memory stays that of K images, however many there are)."""
    lock = threading.Lock()
    live, peak = [0], [0]

    def predict_one(indices: list[int], batch: object) -> list[object]:
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.02 * (3 - indices[0] % 3))  # later batches finish first
        with lock:
            live[0] -= 1
        return [indices[0]]

    engine = SimpleNamespace(metadata={"streams": 3})
    batches = [([i], object()) for i in range(12)]
    got = [preds for _, _, preds in in_flight(engine, iter(batches), predict_one)]
    assert got == [[i] for i in range(12)] and peak[0] == 3


def test_cli_streams(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ocrnet.cli import main

    pkg, image = h.package("openvino", "fp32"), next(
        (h.calib_root() / "leftImg8bit" / "train").rglob("*.png"))
    assert main(["predict", str(pkg), str(image), "--out", str(tmp_path / "a"),
                 "--streams", "2", "--no-progress"]) == 0
    assert main(["predict", str(pkg), str(image), "--out", str(tmp_path / "b"),
                 "--streams", "2", "--ray", "local"]) == 1
    err = capsys.readouterr().err
    assert "--streams 2 applies to runs in this process" in err and err.count("\n") <= 2
    assert main(["eval", str(h.package("onnxruntime", "fp32")), "--data-root",
                 str(h.calib_root()), "--split", "train", "--streams", "2"]) == 1
    assert "no throughput mode" in capsys.readouterr().err
