"""`ocrnet serve` end to end: real servers in subprocesses on 127.0.0.1, a real httpx client.

One 4x3x64x128 OpenVINO fp32 package built from the shipped demo checkpoint (~40 s, once per
pytest process; test_serve_ray.py reuses it). Answers are compared byte for byte with the files
`ocrnet.predict.predict` writes for the same images and package.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openvino")
httpx = pytest.importorskip("httpx")

from _engine_helpers import DEMO, shared, workdir  # noqa: E402

SHAPE = (4, 3, 64, 128)
#: The server's format= -> predict's output name for it.
FORMATS = {"labels": "labels", "labelids": "labelids", "color": "color", "overlay": "overlay",
           "json": "json"}
IMAGES = ("a.png", "b.jpg", "c.bmp", "d.png")  # d is half size: upscaled, logits resized back


# --- shared artifacts (made once per test run) ------------------------------------------------
@shared
def demo_package() -> Path:
    """The demo model as an OpenVINO fp32 package, 4x3x64x128 (a static batch of 4)."""
    from ocrnet.build import build_package

    checkpoint = DEMO / "ocrnet_hr18_synthetic_demo.pth"
    return build_package(checkpoint, workdir() / "serve-ov-fp32-4x64x128", backend="openvino",
                         precision="fp32", shape=SHAPE).path


@shared
def images() -> dict[str, Path]:
    from ocrnet.data.synthetic import generate_scene

    folder = workdir() / "serve-images"
    folder.mkdir(exist_ok=True)
    paths = {}
    for i, name in enumerate(IMAGES):
        h, w = (32, 64) if name == "d.png" else SHAPE[2:]
        scene = generate_scene(10 + i, h, w)
        rgb = scene[0] if isinstance(scene, tuple) else scene
        paths[name] = folder / name
        assert cv2.imwrite(str(paths[name]), np.ascontiguousarray(rgb[:, :, ::-1]))
    return paths


@shared
def expected() -> dict[tuple[str, str], bytes]:
    """(image, format) -> what predict wrote (json: prediction_summary of predict's labels)."""
    from ocrnet.predict import predict, prediction_summary

    paths = [str(p) for p in images().values()]
    out: dict[tuple[str, str], bytes] = {}
    for fmt in ("trainids", "cityscapes"):
        folder = workdir() / f"serve-predict-{fmt}"
        results = predict(demo_package(), paths, folder, format=fmt, color=True, overlay=True,
                          batch_size=SHAPE[0], progress=False)
        for r in results:
            name = Path(r["image"]).name
            key = "labels" if fmt == "trainids" else "labelids"
            out[name, key] = Path(r["labels"]).read_bytes()
            out[name, "color"] = Path(r["color"]).read_bytes()
            out[name, "overlay"] = Path(r["overlay"]).read_bytes()
            if fmt == "trainids":
                labels = cv2.imread(r["labels"], cv2.IMREAD_UNCHANGED)
                out[name, "json"] = json.dumps(prediction_summary(labels)).encode()
    return out


# --- servers ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`ocrnet serve` in a subprocess, its output in a log file shown when a test fails."""

    def __init__(self, package: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir() / f"serve-{self.port}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ocrnet", "serve", str(package), "--host", "127.0.0.1",
                 "--port", str(self.port), *args], stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def metric(self, name: str, labels: str = "") -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
        return float(match[1]) if match else 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Server, Server]]:
    """Two servers, started together: `server` and `tight` below."""
    main = Server(demo_package(), "--max-wait-ms", "50", "--max-body-mb", "1",
                  "--max-pixels", "4000000", "--workers", "2", "--read-timeout-s", "4")
    # Batches never fill (2 s window, 2 places in the queue), so waits end by the timeout.
    tight = Server(demo_package(), "--max-wait-ms", "2000", "--max-queue", "2",
                   "--timeout-s", "1", "--workers", "1", "--threads", "1")
    try:
        expected()  # predict runs while the servers load
        main.wait_ready()
        tight.wait_ready()
        yield main, tight
    finally:
        main.stop()
        tight.stop()


@pytest.fixture(scope="module")
def server(servers: tuple[Server, Server]) -> Server:
    return servers[0]


@pytest.fixture(scope="module")
def tight(servers: tuple[Server, Server]) -> Server:
    return servers[1]


async def _post_all(url: str, bodies: list[tuple[str, bytes]], **kw: object) -> list:
    async with httpx.AsyncClient(timeout=120) as client:
        return await asyncio.gather(*(client.post(f"{url}/v1/segment?format={fmt}", content=body,
                                                  **kw) for fmt, body in bodies))


def post_all(url: str, bodies: list[tuple[str, bytes]]) -> list:
    return asyncio.run(_post_all(url, bodies))


def body(name: str) -> bytes:
    return images()[name].read_bytes()


def assert_json_error(response: object, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    payload = response.json()
    assert set(payload) == {"error", "detail"} and payload["detail"], payload
    assert "Traceback" not in response.text
    return payload


# --- tests -------------------------------------------------------------------------------------
def test_health_ready_and_model(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "alive"}
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    info = httpx.get(f"{server.url}/v1/model").json()
    manifest = json.loads((demo_package() / "ocrnet.json").read_text())
    assert (info["backend"], info["precision"]) == ("openvino", "fp32")
    assert info["input"]["shape"] == list(SHAPE)
    assert len(info["classes"]) == 19 and len(info["palette"]) == 19
    assert info["files"] == manifest["files"]
    assert info["source"]["sha256"] == manifest["source"]["sha256"]
    assert info["manifest_sha256"] == hashlib.sha256(
        (demo_package() / "ocrnet.json").read_bytes()).hexdigest()
    assert info["serving"]["max_batch"] == 4 and info["serving"]["scale"] == [128, 64]


def test_every_format_is_byte_identical_to_predict(server: Server) -> None:
    want = expected()
    cases = [(name, fmt) for name in IMAGES for fmt in FORMATS]
    answers = post_all(server.url, [(fmt, body(name)) for name, fmt in cases])
    for (name, fmt), response in zip(cases, answers, strict=True):
        assert response.status_code == 200, (name, fmt, response.text)
        if fmt == "json":
            assert response.json() == json.loads(want[name, fmt]), name
            assert response.json()["height"] == (32 if name == "d.png" else 64)
        else:
            assert response.headers["content-type"] == "image/png"
            assert response.content == want[name, fmt], (name, fmt)
    # multipart/form-data carries the same image to the same bytes
    with open(images()["b.jpg"], "rb") as fh:
        response = httpx.post(f"{server.url}/v1/segment", files={"file": ("b.jpg", fh)},
                              timeout=60)
    assert response.status_code == 200 and response.content == want["b.jpg", "labels"]


def test_32_concurrent_requests_are_correct_and_batched(server: Server) -> None:
    batches_before = server.metric("ocrnet_batch_size_count")
    singles_before = server.metric("ocrnet_batch_size_bucket", '{le="1.0"}')
    names = [IMAGES[i % len(IMAGES)] for i in range(32)]
    answers = post_all(server.url, [("labels", body(n)) for n in names])
    for name, response in zip(names, answers, strict=True):
        assert response.status_code == 200, response.text
        assert response.content == expected()[name, "labels"], name
    batches = server.metric("ocrnet_batch_size_count") - batches_before
    multi = batches - (server.metric("ocrnet_batch_size_bucket", '{le="1.0"}') - singles_before)
    assert multi >= 1 and batches < 32, (batches, multi)
    assert max(int(r.headers["x-ocrnet-batch-size"]) for r in answers) > 1
    assert server.metric("ocrnet_queue_depth") == 0


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096, 9)) + chunk(b"IEND", b""))


def test_bad_input_gets_a_json_error_and_the_server_keeps_serving(server: Server) -> None:
    png = body("a.png")
    square = cv2.imencode(".png", np.full((100, 100, 3), 128, np.uint8))[1].tobytes()
    cases = [
        ("labels", b"", 400, "empty"),
        ("labels", b"this is not an image", 415, "not an image"),
        ("labels", png[:200], 415, "decode"),  # a truncated PNG
        ("labels", os.urandom(1_100_000), 413, "body"),  # over --max-body-mb 1
        ("labels", _png_claiming(30_000, 30_000), 413, "over the limit"),  # a bomb's header
        ("jsn", png, 422, "did you mean 'json'"),
        ("labels&opacity=2", png, 422, "opacity"),
        ("labels&opacity=abc", png, 422, "opacity"),
        ("labels", square, 422, "aspect ratio"),  # a static 64x128 package cannot run it
    ]
    answers = post_all(server.url, [(fmt, data) for fmt, data, _, _ in cases])
    for (fmt, _, status, words), response in zip(cases, answers, strict=True):
        payload = assert_json_error(response, status)
        assert words in payload["detail"], (fmt, payload)
    assert_json_error(httpx.get(f"{server.url}/v1/segment"), 405)
    assert_json_error(httpx.get(f"{server.url}/nowhere"), 404)
    ok = httpx.post(f"{server.url}/v1/segment", content=png, timeout=60)
    assert ok.status_code == 200 and ok.content == expected()["a.png", "labels"]
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def wait_past_the_window(since: float) -> None:
    """Sleep until tight's batcher (a 2 s window) would have run anything queued at `since`."""
    time.sleep(max(0.0, since + 2.0 + 1.5 - time.monotonic()))


def test_full_queue_503_with_retry_after_and_waiting_too_long_504(tight: Server) -> None:
    withdrawn = tight.metric("ocrnet_withdrawn_total")
    sent = time.monotonic()
    answers = post_all(tight.url, [("labels", body("a.png"))] * 3)
    codes = sorted(r.status_code for r in answers)
    assert codes == [503, 504, 504], [(r.status_code, r.text) for r in answers]
    busy = next(r for r in answers if r.status_code == 503)
    assert_json_error(busy, 503)
    assert int(busy.headers["retry-after"]) >= 1
    for r in answers:
        assert_json_error(r, r.status_code)
    assert tight.metric("ocrnet_queue_depth") == 0
    assert tight.metric("ocrnet_withdrawn_total") - withdrawn == 2  # both 504s withdrawn
    wait_past_the_window(sent)
    assert tight.metric("ocrnet_images_total") == 0  # timed-out work never reached the engine


def test_a_client_that_leaves_has_its_work_dropped(tight: Server) -> None:
    data = body("a.png")
    withdrawn = tight.metric("ocrnet_withdrawn_total")
    sent = time.monotonic()
    with socket.create_connection(("127.0.0.1", tight.port)) as sock:
        sock.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(data) + data)
        time.sleep(0.15)  # admitted and queued (the batch window is 2 s, the timeout 1 s)
    deadline = time.monotonic() + 5
    while tight.metric("ocrnet_requests_total", '{code="499"}') < 1:
        assert time.monotonic() < deadline, tight.output()
        time.sleep(0.05)
    assert tight.metric("ocrnet_queue_depth") == 0
    assert tight.metric("ocrnet_withdrawn_total") - withdrawn == 1
    wait_past_the_window(sent)
    assert tight.metric("ocrnet_images_total") == 0


SLOW_HEAD = (b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
             b"Content-Length: 100000\r\n\r\n\x89PNG")


def test_slow_clients_hold_no_place_and_get_408(server: Server) -> None:
    """120 clients send headers and 4 of 100,000 body bytes, then stall (more than --max-queue
    64: when a request took its place before its body arrived, everyone else got 503). The
    honest client is served while they are connected; each gets 408 and is disconnected."""
    slow: list[socket.socket] = []
    try:
        started = time.monotonic()
        for _ in range(120):
            slow.append(socket.create_connection(("127.0.0.1", server.port), timeout=20))
            slow[-1].sendall(SLOW_HEAD)
        ok = httpx.post(f"{server.url}/v1/segment", content=body("a.png"), timeout=60)
        assert ok.status_code == 200 and ok.content == expected()["a.png", "labels"]
        assert time.monotonic() - started < 4.0, "served only after the slow ones timed out"
        for sock in slow:  # --read-timeout-s 4, then the server closes the connection
            answer = b"".join(iter(lambda s=sock: s.recv(65536), b""))
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            assert b'"error":"request_timeout"' in answer
    finally:
        for sock in slow:
            sock.close()
    assert server.metric("ocrnet_requests_total", '{code="408"}') >= 120


def _rss_kb(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M)[1])


def test_a_compressible_4mp_png_stays_in_a_bounded_working_set(server: Server) -> None:
    """A 2828x1414 all-zero PNG (12 KB, just under the server's --max-pixels 4 MP): resizing all
    19 logit channels at that size took 19 x 4 B x 4 MP = 304 MB more (plus an int64 argmax);
    the bounded path takes about 10 B per pixel. The peak is the kernel's high-water mark,
    reset first (/proc/PID/clear_refs)."""
    png = cv2.imencode(".png", np.zeros((1414, 2828, 3), np.uint8))[1].tobytes()
    pid = server.proc.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := the current RSS
    before = _rss_kb(pid, "VmRSS")
    answer = httpx.post(f"{server.url}/v1/segment?format=json", content=png, timeout=120)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["height"], answer.json()["width"]) == (1414, 2828)
    grew_mb = (_rss_kb(pid, "VmHWM") - before) / 1024
    assert grew_mb < 150, f"one 4 MP image raised the server's peak RSS by {grew_mb:.0f} MB"


def test_sigterm_drains_in_flight_requests_and_exits_0(server: Server) -> None:
    """Last, as it stops the module's server."""
    import threading

    names = [IMAGES[i % len(IMAGES)] for i in range(12)]
    answers: list = [None] * len(names)

    def send(i: int) -> None:
        answers[i] = httpx.post(f"{server.url}/v1/segment", content=body(names[i]), timeout=120)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while True:  # every request admitted (in flight or already answered), some still in flight
        in_flight = server.metric("ocrnet_requests_in_flight")
        if in_flight + sum(a is not None for a in answers) >= len(names):
            assert in_flight >= 1, "every request was answered before the signal"
            break
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.02)
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(120)
    assert server.proc.wait(60) == 0, server.output()
    for name, response in zip(names, answers, strict=True):
        assert response is not None and response.status_code == 200, server.output()
        assert response.content == expected()[name, "labels"]
    assert "stopped by signal 15" in server.output()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=2)
