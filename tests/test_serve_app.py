"""The serve app in-process (ASGI, no sockets): fuzzed over its OpenAPI with schemathesis, its
memory budget, what every answer is counted as, and what a replica refuses to serve.

The package is the serve tests' 4x3x64x128 OpenVINO demo package (tests/_serve_helpers.py, built
once per pytest process), copied so a test may change the copy's files.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openvino")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from _engine_helpers import workdir  # noqa: E402
from _serve_helpers import body, package  # noqa: E402


def _client(package: Path, **options: Any) -> TestClient:
    from ocrnet.serve import create_app

    return TestClient(create_app(package, **options), raise_server_exceptions=False)


def _ready(client: TestClient) -> None:
    deadline = time.monotonic() + 120
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").text
        time.sleep(0.1)


@pytest.fixture(scope="module")
def package_copy() -> Path:
    copy = workdir() / "serve-app-package"
    if not copy.exists():
        shutil.copytree(package(), copy)
    return copy


@pytest.fixture(scope="module")
def client(package_copy: Path) -> Iterator[TestClient]:
    """One 64x128 image costs ~0.3 MB of the budget: 0.5 MB admits one at a time."""
    with _client(package_copy, max_inflight_mb=0.5, max_wait_ms=1) as c:
        _ready(c)
        yield c


def metric(client: TestClient, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", client.get("/metrics").text, re.M)
    return float(match[1]) if match else 0.0


def assert_json_error(response: Any, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    payload = response.json()
    assert set(payload) == {"error", "detail"} and payload["detail"], payload
    return payload


def test_every_answer_is_counted_by_its_status(client: TestClient) -> None:
    before = {code: metric(client, "ocrnet_requests_total", f'{{code="{code}"}}')
              for code in (200, 404, 405, 422)}
    assert client.post("/v1/segment", content=body("a.png")).status_code == 200
    assert_json_error(client.post("/v1/segment?opacity=abc", content=b"x"), 422)  # FastAPI's
    assert_json_error(client.post("/v1/segment?format=jsn", content=b"x"), 422)  # ours
    assert_json_error(client.get("/nowhere"), 404)
    assert_json_error(client.get("/v1/segment"), 405)
    client.get("/healthz")  # probes and scrapes are not counted
    after = {code: metric(client, "ocrnet_requests_total", f'{{code="{code}"}}')
             for code in before}
    assert {c: after[c] - before[c] for c in before} == {200: 1, 404: 1, 405: 1, 422: 2}
    assert metric(client, "ocrnet_requests_in_flight") == 0


def test_memory_budget_refuses_with_503_or_413_and_gives_back(client: TestClient) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    assert service.budget.used == 0
    hold = service.budget.reservation()
    assert hold.grow(service.budget.limit - 1000)  # as if other requests held it
    try:
        busy = client.post("/v1/segment", content=body("a.png"))
        assert_json_error(busy, 503)
        assert "--max-inflight-mb" in busy.json()["detail"] and int(busy.headers["retry-after"])
    finally:
        hold.release()
    assert client.post("/v1/segment", content=body("a.png")).status_code == 200
    # an image that could never fit: 413 at once (retrying would not help), nothing decoded
    big = cv2.imencode(".png", np.zeros((400, 800, 3), np.uint8))[1].tobytes()
    assert "more than the whole --max-inflight-mb" in assert_json_error(
        client.post("/v1/segment", content=big), 413)["detail"]
    assert service.budget.used == 0  # every reservation given back


def test_a_crash_answers_500_without_its_text(package_copy: Path) -> None:
    from ocrnet.serve import create_app

    app = create_app(package_copy)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret /etc/passwd detail")

    with TestClient(app, raise_server_exceptions=False) as c:
        answer = c.get("/boom")
        assert_json_error(answer, 500)
        assert "secret" not in answer.text and "RuntimeError" not in answer.text
        assert metric(c, "ocrnet_requests_total", '{code="500"}') == 1


def test_model_info_is_served_from_memory(client: TestClient, package_copy: Path) -> None:
    first = client.get("/v1/model").json()
    assert first["serving"]["replica"] is None  # not on Ray Serve
    manifest = package_copy / "ocrnet.json"
    saved = manifest.read_bytes()
    manifest.write_bytes(b"changed on disk after the start")
    try:
        assert client.get("/v1/model").json() == first
    finally:
        manifest.write_bytes(saved)


def test_a_replica_refuses_a_package_other_than_the_deployers(package_copy: Path) -> None:
    from ocrnet.fileio import sha256_file

    right = sha256_file(package_copy / "ocrnet.json")
    with _client(package_copy, package_sha256="0" * 64) as c:
        service = c.app.state.service  # type: ignore[attr-defined]
        for _ in range(1200):  # the loader thread checks before opening the engine
            if service.error:
                break
            time.sleep(0.1)
        assert service.error and "another package" in service.error
        assert_json_error(c.get("/readyz"), 503)
        assert "0000" not in c.get("/healthz").text  # the reason goes to the log only
    with _client(package_copy, package_sha256=right) as c:
        _ready(c)


# --- fuzzing -----------------------------------------------------------------------------------
def test_fuzzed_requests_never_500_and_errors_are_json(client: TestClient) -> None:
    """schemathesis over the app's own OpenAPI, in-process: every operation, valid and invalid
    parameters and bodies (random bytes as an image, multipart forms), a few examples each."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    answered: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        takes_input = len(operation.query) or len(operation.body)
        for mode in schemathesis.GenerationMode:
            if mode is schemathesis.GenerationMode.NEGATIVE and not takes_input:
                continue  # nothing to make invalid

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=5, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def call(case: Any) -> None:
                response = case.call()
                code = response.status_code
                answered.setdefault(f"{case.method} {case.path}", set()).add(code)
                assert code < 500 or code == 503, (case.path, case.query, response.text)
                if code >= 400:  # the v2 protocol's error shape is {"error"} alone
                    shape = {"error"} if case.path.startswith("/v2") else {"error", "detail"}
                    assert set(response.json()) == shape, response.text

            call()
    assert len(answered) >= 5 and any(c >= 400 for c in answered["POST /v1/segment"]), answered
