"""`ocrnet serve --ray`: the same app on Ray Serve, on the session's local two-node Ray cluster
(tests/conftest.py), inside the loopback-only namespace `make test` runs in."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("ray.serve")
pytest.importorskip("openvino")
httpx = pytest.importorskip("httpx")

from _serve_helpers import (  # noqa: E402
    IMAGES,
    body,
    expected,
    free_port,
    package,
    post_all_async,
)

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_url(ray_cluster: Any) -> Iterator[str]:
    from ray import serve

    from ocrnet.serve.config import ServeConfig
    from ocrnet.serve.ray_serve import APP_NAME, deploy, wait_ready

    expected()  # predict's files, made in this process before the replica competes for CPUs
    url = deploy(package(), ServeConfig(max_wait_ms=50), replicas=1,
                 cpus_per_replica=1, host="127.0.0.1", port=free_port())
    try:
        wait_ready(url, timeout=180)
        yield url
    finally:
        serve.delete(APP_NAME)
        serve.shutdown()


def test_ray_serve_answers_like_predict_and_batches(ray_url: str) -> None:
    names = [IMAGES[i % len(IMAGES)] for i in range(8)]
    answers = asyncio.run(post_all_async(ray_url, [("labels", body(n)) for n in names]))
    for name, response in zip(names, answers, strict=True):
        assert response.status_code == 200, response.text
        assert response.content == expected()[name, "labels"], name
    assert max(int(r.headers["x-ocrnet-batch-size"]) for r in answers) > 1
    overlay = httpx.post(f"{ray_url}/v1/segment?format=overlay", content=body("d.png"),
                         timeout=60)
    assert overlay.status_code == 200 and overlay.content == expected()["d.png", "overlay"]
    bad = httpx.post(f"{ray_url}/v1/segment", content=b"not an image", timeout=60)
    assert bad.status_code == 415 and set(bad.json()) == {"error", "detail"}
    info = httpx.get(f"{ray_url}/v1/model", timeout=30).json()
    assert info["backend"] == "openvino" and info["serving"]["max_batch"] == 4
    assert info["serving"]["replica"]  # metrics mirrored into ray.serve.metrics by replica



def test_ray_serve_answers_the_v2_protocol(ray_url: str) -> None:
    triton = pytest.importorskip("tritonclient.http")
    import cv2
    import numpy as np

    name = package().name  # the default model name: the package folder's
    client = triton.InferenceServerClient(ray_url.removeprefix("http://"), network_timeout=120)
    assert client.is_server_ready() and client.is_model_ready(name)
    assert client.get_model_metadata(name)["inputs"][0]["datatype"] == "BYTES"
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([body("a.png")], dtype=np.object_))
    labels = client.infer(name, [image]).as_numpy("labels")
    want = cv2.imdecode(np.frombuffer(expected()["a.png", "labels"], np.uint8),
                        cv2.IMREAD_UNCHANGED)
    assert labels[0].tobytes() == want.tobytes()
