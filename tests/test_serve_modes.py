"""`POST /v1/segment?mode=slide|aug` and `format=confidence` answer as `ocrnet predict` writes.

One server of its own (`--scale 256x128`) on the serve tests' static 4x3x64x128 OpenVINO package
(tests/_serve_helpers.py), run inside the loopback-only namespace (tools/loopback_only.sh), like
every server test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openvino")
httpx = pytest.importorskip("httpx")

from _engine_helpers import workdir  # noqa: E402
from _serve_helpers import Server, images, package, started  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # --scale 256x128: the 50x90 test image becomes 128x230, 9 tiles of the package's 64x128
    # (mmseg's 2048x1024 would make it 1024x1843, hundreds of tiles)
    srv = Server(package(), "--scale", "256x128")
    with started(srv, predict_meanwhile=False):
        yield srv


def _post(server: Server, data: bytes, **params: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/segment", params=params, content=data, timeout=120)


def test_slide_and_confidence_equal_predict(server: Server):
    from ocrnet.predict import predict

    # 50x90: an aspect ratio the static 64x128 package cannot run whole; slide tiles it
    image = cv2.resize(cv2.imread(str(images()["a.png"])), (90, 50))
    path = workdir() / "serve-modes-odd.png"
    cv2.imwrite(str(path), image)
    whole = _post(server, path.read_bytes())
    assert whole.status_code == 422
    (want,) = predict(package(), [path], workdir() / "serve-modes-out", mode="slide",
                      confidence=True, progress=False, overwrite=True, scale="256x128")
    got = _post(server, path.read_bytes(), mode="slide")
    assert got.status_code == 200 and got.headers["x-ocrnet-mode"] == "slide"
    assert got.content == Path(want["labels"]).read_bytes()
    conf = _post(server, path.read_bytes(), mode="slide", format="confidence")
    assert conf.status_code == 200 and conf.content == Path(want["confidence"]).read_bytes()
    decoded = cv2.imdecode(np.frombuffer(conf.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape == (50, 90) and decoded.min() >= 13  # p >= 1/19


def test_aug_on_a_static_package_is_refused_with_the_reason(server: Server):
    got = _post(server, images()["a.png"].read_bytes(), mode="aug")
    assert got.status_code == 422 and "--dynamic" in got.json()["detail"]
    bad = _post(server, images()["a.png"].read_bytes(), mode="tiles")
    assert bad.status_code == 422 and "valid: whole, slide, aug" in bad.json()["detail"]
