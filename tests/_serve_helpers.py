"""What the serve tests share, made once per pytest process: the package, the images, what
`ocrnet predict` writes for them, and `ocrnet serve` in a subprocess.

The package is the shipped demo model as a static 4x3x64x128 OpenVINO fp32 package
(`_engine_helpers.demo_package`: built once, ~40 s, and reused by test_predict's static-batch
test). The servers that several test files start alike are session fixtures in conftest.py
(`serve_main`, `serve_tight`), started once. Import this module only after
`pytest.importorskip("httpx")` (and fastapi, openvino): it needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np

from _engine_helpers import demo_package, shared, workdir

SHAPE = (4, 3, 64, 128)
IMAGES = ("a.png", "b.jpg", "c.bmp", "d.png")  # d is half size: upscaled, logits resized back
#: The v2 model name of the shared `serve_main` server (`--model-name`).
MODEL_NAME = "ovmodel"
#: `serve_main`'s options: small limits the tests can reach, a short batch window, a short read
#: deadline for slow clients (test_serve), a v2 model name (test_serve_v2).
MAIN_OPTIONS = ("--max-wait-ms", "50", "--max-body-mb", "1", "--max-pixels", "4000000",
                "--workers", "2", "--read-timeout-s", "4", "--model-name", MODEL_NAME)
#: `serve_tight`'s: batches never fill (2 s window, 2 places in the queue), so waits end by the
#: 1 s timeout.
TIGHT_OPTIONS = ("--max-wait-ms", "2000", "--max-queue", "2", "--timeout-s", "1",
                 "--workers", "1", "--threads", "1")


def package() -> Path:
    """The demo model as an OpenVINO fp32 package, 4x3x64x128 (a static batch of 4)."""
    return demo_package("openvino", "fp32", SHAPE)


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
        results = predict(package(), paths, folder, format=fmt, color=True, overlay=True,
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


def body(name: str) -> bytes:
    return images()[name].read_bytes()


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


@contextlib.contextmanager
def started(*servers: Server, predict_meanwhile: bool = True) -> Iterator[None]:
    """Wait until every server is ready (predict's files made meanwhile, while they load);
    stop them all on the way out."""
    try:
        if predict_meanwhile:
            expected()
        for server in servers:
            server.wait_ready()
        yield
    finally:
        for server in servers:
            server.stop()


# --- clients ------------------------------------------------------------------------------------
async def post_all_async(url: str, bodies: list[tuple[str, bytes]], **kw: object) -> list:
    """Every (format, body) posted to /v1/segment at once; the answers in order."""
    async with httpx.AsyncClient(timeout=120) as client:
        return await asyncio.gather(*(client.post(f"{url}/v1/segment?format={fmt}", content=body,
                                                  **kw) for fmt, body in bodies))


def post_all(url: str, bodies: list[tuple[str, bytes]]) -> list:
    return asyncio.run(post_all_async(url, bodies))
