"""What the serve benchmarks share (serve_load.py, serve_soak.py, serve_v2.py): the package and
images they run on, `ocrnet serve` in a subprocess, the closed-loop HTTP client and its tally,
the engine-alone reference, and the machine line of their reports. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "ocrnet" / "assets" / "ocrnet_hr18_synthetic_demo.pth"


# --- setup ---------------------------------------------------------------------------------
def add_package_options(p: argparse.ArgumentParser, out: str) -> None:
    """The options naming the package a benchmark serves (built from the demo when absent)."""
    p.add_argument("--package", help="engine package (default: build the demo model)")
    p.add_argument("--shape", default="4x3x256x512", help="NxCxHxW of the built package")
    p.add_argument("--precision", default="fp32", help="precision of the built package")
    p.add_argument("--out", default=out, help="folder for the package and JSON")


def build_demo_package(out: Path, args: argparse.Namespace) -> Path:
    from ocrnet.build import build_package
    from ocrnet.package import is_package

    shape = tuple(int(d) for d in args.shape.split("x"))
    path = out / f"openvino-{args.precision}-{args.shape}"
    if is_package(path):
        return path
    print(f"building {path} from the demo checkpoint (once)", flush=True)
    return build_package(DEMO, path, backend="openvino", precision=args.precision,
                         shape=shape).path


def make_images(folder: Path, h: int, w: int, count: int) -> list[bytes]:
    import cv2

    from ocrnet.data.synthetic import generate_scene

    folder.mkdir(parents=True, exist_ok=True)
    encoded = []
    for i in range(count):
        scene = generate_scene(1000 + i, h, w)
        rgb = scene[0] if isinstance(scene, tuple) else scene
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
        assert ok
        (folder / f"scene{i:02d}.png").write_bytes(buf.tobytes())
        encoded.append(buf.tobytes())
    return encoded


def bench_engine(package: Path, n: int, h: int, w: int, seconds: float) -> dict:
    """The engine alone (`ocrnet bench PKG --batch N`): img/s and one call's latency."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        subprocess.run([sys.executable, "-m", "ocrnet", "bench", str(package), "--batch", str(n),
                        "--shape", f"{h}x{w}", "--duration", str(seconds), "--json", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
        result = json.loads(out.read_text())["results"][0]
    latency = result.get("latency_ms") or result
    return {"img_s": result["throughput_ips"], "batch": n,
            "p50_ms": latency.get("p50"), "p90_ms": latency.get("p90"),
            "p99_ms": latency.get("p99")}


class Server:
    """`ocrnet serve` in a subprocess on 127.0.0.1 and a free port."""

    def __init__(self, package: Path, *extra: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        fd, name = tempfile.mkstemp(prefix="serve-bench-", suffix=".log")
        self.log = Path(name)
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ocrnet", "serve", str(package), "--port", str(self.port),
                 *extra], stdout=log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError("server not ready after 180 s")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def metrics(self) -> str:
        import httpx

        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> bool:
        """SIGTERM; True if it drained and exited 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode == 0


# --- the client ----------------------------------------------------------------------------
class Tally:
    """Status counts per client kind (-1: connection error or client timeout), latencies of the
    200s per kind, and the Retry-After header of every 503 (None where missing)."""

    def __init__(self) -> None:
        self.codes: dict[str, Counter[int]] = {}
        self.ok_ms: dict[str, list[float]] = {}
        self.retry_after: list[str | None] = []

    def add(self, kind: str, code: int, ms: float | None = None) -> None:
        self.codes.setdefault(kind, Counter())[code] += 1
        if code == 200 and ms is not None:
            self.ok_ms.setdefault(kind, []).append(ms)


async def post_loop(http: Any, url: str, bodies: Iterator[bytes], tally: Tally, kind: str, *,
                    stop_at: float, pause_s: float = 0.0, backoff_s: float = 0.0) -> None:
    """One closed-loop client: POST /v1/segment with the next body after each answer, until
    `bodies` runs out or `stop_at` (time.monotonic) passes; `pause_s` after every answer,
    `backoff_s` more after a 503. `bodies` may be shared by several loops (one total budget)."""
    import httpx

    while time.monotonic() < stop_at:
        body = next(bodies, None)
        if body is None:
            return
        t0 = time.perf_counter()
        try:
            r = await http.post(f"{url}/v1/segment", content=body)
            code = r.status_code
            if code == 503:
                tally.retry_after.append(r.headers.get("retry-after"))
                await asyncio.sleep(backoff_s)
        except httpx.HTTPError:
            code = -1
        tally.add(kind, code, (time.perf_counter() - t0) * 1000)
        if pause_s:
            await asyncio.sleep(pause_s)


def latency_summary(ok_ms: list[float]) -> dict:
    """p50/p90/p99 and the mean of the 200s' latencies (NaN when there were none)."""
    ms = sorted(ok_ms) or [float("nan")]
    return {"p50_ms": pct(ms, 50), "p90_ms": pct(ms, 90), "p99_ms": pct(ms, 99),
            "mean_ms": float(np.mean(ms))}


def pct(sorted_ms: list[float], q: float) -> float:
    return float(np.percentile(sorted_ms, q)) if sorted_ms else float("nan")


# --- the server's /metrics -----------------------------------------------------------------
def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match[1]) if match else 0.0


def mean_batch(before: str, after: str) -> float:
    calls = metric(after, "ocrnet_batch_size_count") - metric(before, "ocrnet_batch_size_count")
    images = metric(after, "ocrnet_batch_size_sum") - metric(before, "ocrnet_batch_size_sum")
    return images / calls if calls else float("nan")


def requests_by_code(text: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in
            re.finditer(r'^ocrnet_requests_total\{code="(\d+)"\} (\S+)$', text, re.M)}


# --- report --------------------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "load_avg_1m_at_end": os.getloadavg()[0]}
