"""`POST /v1/segment?mode=slide|aug` and `format=confidence` answer as `ocrnet predict` writes.

Two servers of their own, started together, on the serve tests' static 4x3x64x128 OpenVINO
package (tests/_serve_helpers.py), run inside the loopback-only namespace
(tools/loopback_only.sh) like every server test: `server` (`--scale 256x128`) and `budgeted` (a
2 MB --max-inflight-mb, where a test mode's own working set decides).
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
def servers() -> Iterator[tuple[Server, Server]]:
    # --scale 256x128: the 50x90 test image becomes 128x230, 9 tiles of the package's 64x128
    # (mmseg's 2048x1024 would make it 1024x1843, hundreds of tiles)
    main = Server(package(), "--scale", "256x128")
    # the package's own 128x64: a 64x128 image runs whole, and slide runs it as one tile
    budgeted = Server(package(), "--scale", "128x64", "--max-inflight-mb", "2")
    with started(main, budgeted, predict_meanwhile=False):
        yield main, budgeted


@pytest.fixture(scope="module")
def server(servers: tuple[Server, Server]) -> Server:
    return servers[0]


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


def test_a_mode_is_admitted_at_its_own_cost(servers: tuple[Server, Server]):
    """Regression: slide and confidence were reserved at the whole-image cost. A 64x128 image
    whole needs ~0.3 MB; slide holds a batch of four 64x128 tiles and their 19-class logits
    plus the float32 sum (~3.8 MB), over the 2 MB budget: 413 before any work, naming why."""
    from ocrnet.serve.budget import image_cost, mode_cost
    from ocrnet.shapes import Size
    from ocrnet.work.modes import Mode

    budgeted = servers[1]
    slide = Mode.parse("slide", crop=Size(64, 128), stride=Size(42, 85))
    need = mode_cost(64, 128, slide, resized=(64, 128), classes=19, per_call=4,
                     confidence=False)
    assert image_cost(64, 128, 64 * 128) < 2 << 20 < need  # the sizes this test relies on
    data = images()["a.png"].read_bytes()
    assert _post(budgeted, data).status_code == 200
    refused = _post(budgeted, data, mode="slide")
    assert refused.status_code == 413, refused.text
    detail = refused.json()["detail"]
    assert "in mode slide" in detail and "--max-inflight-mb 2" in detail
    conf = _post(budgeted, data, format="confidence")  # whole + confidence fits: ~1.5 MB
    assert conf.status_code == 200, conf.text
    assert budgeted.metric("ocrnet_queue_depth") == 0


def test_mode_costs_count_each_modes_working_set():
    """`mode_cost` against the arrays each mode holds at its largest moment (19 classes)."""
    from ocrnet.serve.budget import CONFIDENCE_BYTES_PER_PIXEL, image_cost, mode_cost
    from ocrnet.shapes import Size
    from ocrnet.work.modes import Mode, aug_size

    h, w, c = 512, 1024, 19
    whole = image_cost(h, w, h * w)
    slide = Mode.parse("slide", crop=Size(256, 512), stride=Size(170, 341))
    got = mode_cost(h, w, slide, resized=(h, w), classes=c, per_call=2, confidence=False)
    assert got == whole + 2 * (3 + c) * 4 * 256 * 512 + (c + 1) * 4 * h * w
    conf = mode_cost(h, w, Mode(), resized=(h, w), classes=c, per_call=1, confidence=True)
    assert conf == whole + c * 4 * h * w + CONFIDENCE_BYTES_PER_PIXEL * h * w
    aug = Mode.parse("aug", ratios=[0.5, 1.75], flip=True)
    big = aug_size(h, w, 1.75)
    got = mode_cost(h, w, aug, resized=None, classes=c, per_call=1, confidence=False)
    assert got == image_cost(h, w, 0) + (15 + 2 * (12 + 4 * c) + 4 * c) * big[0] * big[1] \
        + 3 * c * 4 * h * w
    assert got > 3 * c * 4 * h * w > whole  # aug's sums alone outweigh a whole image
