"""`ocrnet serve` under load, side by side with the engine alone (`ocrnet bench`), on loopback.

    sh tools/loopback_only.sh .venv/bin/python benchmarks/serve_load.py [--package PKG]

One package (default: the shipped demo model as an OpenVINO fp32 package, 4x3x256x512, built
once into --out), one set of generated 256x512 street scenes (PNG). In turn:

1. engine alone: `ocrnet bench PKG --batch N` (img/s, latency of one call), before and again
   after step 2 (the reference is their mean);
2. the server (`ocrnet serve`, a subprocess) at client concurrency 1, 4, 16: each client sends
   one image, waits for the answer, sends the next (closed loop), `--requests` in all per level
   or `--seconds`, whichever ends first: img/s, p50/p90/p99 latency, errors, mean batch size;
   then the same over the Open Inference Protocol v2 at `--v2-concurrency` (a real
   `tritonclient.http` client per thread, binary tensor data: benchmarks/serve_v2.py);
3. overload: a server with a small `--max-queue` and far more clients than places, for
   `--overload-seconds`: answers by status, whether every 503 carried Retry-After, and the
   server's RSS before, at peak and after two waves (memory must not grow).

Every phase is bounded in requests and seconds and only 127.0.0.1 is contacted. Prints a
Markdown table (and writes it to --markdown) with the machine, the command and the date.
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
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "ocrnet" / "assets" / "ocrnet_hr18_synthetic_demo.pth"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--package", help="engine package (default: build the demo model)")
    p.add_argument("--shape", default="4x3x256x512", help="NxCxHxW of the built package")
    p.add_argument("--precision", default="fp32", help="precision of the built package")
    p.add_argument("--out", default="runs/serve_load", help="folder for the package and JSON")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--v2-concurrency", type=int, nargs="*", default=[4],
                   help="levels of the /v2 rows (tritonclient, binary data); none to skip")
    p.add_argument("--requests", type=int, default=96, help="requests per level at most")
    p.add_argument("--seconds", type=float, default=40.0, help="seconds per level at most")
    p.add_argument("--bench-seconds", type=float, default=15.0, help="ocrnet bench --duration")
    p.add_argument("--overload-concurrency", type=int, default=64)
    p.add_argument("--overload-queue", type=int, default=8)
    p.add_argument("--overload-seconds", type=float, default=12.0, help="per wave (2 waves)")
    p.add_argument("--markdown", help="also write the report here")
    args = p.parse_args()

    load_at_start = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    package = Path(args.package) if args.package else build_demo_package(out, args)
    manifest = json.loads((package / "ocrnet.json").read_text())
    n, _, h, w = manifest["input"]["shape"]
    images = make_images(out / "images", h, w, count=16)

    print(f"[1/3] engine alone: ocrnet bench {package} --batch {n}", flush=True)
    engine = bench_engine(package, n, h, w, args.bench_seconds)

    print("[2/3] server at concurrency " + ", ".join(map(str, args.concurrency)), flush=True)
    rows = []
    with Server(package) as server:
        asyncio.run(load(server.url, images, concurrency=4, requests=8, seconds=30))  # warm
        for c in args.concurrency:
            before = server.metrics()
            stats = asyncio.run(load(server.url, images, concurrency=c,
                                     requests=max(args.requests, 4 * c), seconds=args.seconds))
            stats["mean_batch"] = mean_batch(before, server.metrics())
            stats["concurrency"] = c
            rows.append(stats)
            print(f"  c={c}: {stats['img_s']:.2f} img/s, p50 {stats['p50_ms']:.0f} ms, "
                  f"p99 {stats['p99_ms']:.0f} ms, errors {stats['errors']}", flush=True)
        for c in args.v2_concurrency:
            from serve_v2 import load_v2

            before = server.metrics()
            stats = load_v2(server.url, package.name, images, concurrency=c,
                            requests=max(args.requests, 4 * c), seconds=args.seconds)
            stats.update(mean_batch=mean_batch(before, server.metrics()), concurrency=c,
                         what="`ocrnet serve` /v2 (tritonclient, binary)")
            rows.append(stats)
            print(f"  v2 c={c}: {stats['img_s']:.2f} img/s, p50 {stats['p50_ms']:.0f} ms, "
                  f"p99 {stats['p99_ms']:.0f} ms, errors {stats['errors']}", flush=True)
        clean_exit = server.stop()
    # The engine alone again, after the server: the reference is the mean of both, so a machine
    # that got busier or quieter meanwhile shows up as their spread instead of a skewed ratio.
    after = bench_engine(package, n, h, w, args.bench_seconds)
    engine = {**engine, "img_s_before": engine["img_s"], "img_s_after": after["img_s"],
              "img_s": (engine["img_s"] + after["img_s"]) / 2}

    print(f"[3/3] overload: {args.overload_concurrency} clients, --max-queue "
          f"{args.overload_queue}, 2 waves of {args.overload_seconds:g} s", flush=True)
    overload = run_overload(package, images, args)

    report = {"machine": {**machine(), "load_avg_1m_at_start": load_at_start},
              "package": str(package), "input_shape": [n, 3, h, w],
              "precision": manifest["precision"], "backend": manifest["backend"],
              "engine": engine, "server": rows, "server_clean_exit": clean_exit,
              "overload": overload, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    (out / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


# --- setup ---------------------------------------------------------------------------------
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
        fd, name = tempfile.mkstemp(prefix="serve-load-", suffix=".log")
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


# --- load ----------------------------------------------------------------------------------
async def load(url: str, images: list[bytes], *, concurrency: int, requests: int,
               seconds: float, backoff_s: float = 0.0) -> dict:
    """Closed loop: `concurrency` clients, each sending its next image after an answer
    (after `backoff_s` more when the answer was 503)."""
    import httpx

    latencies: list[float] = []
    codes: dict[int, int] = {}
    retry_after: list[str | None] = []
    sent = 0
    stop_at = time.monotonic() + seconds

    async def client(k: int, http: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests and time.monotonic() < stop_at:
            image = images[sent % len(images)]
            sent += 1
            t0 = time.perf_counter()
            try:
                r = await http.post(f"{url}/v1/segment", content=image)
                code = r.status_code
                if code == 503:
                    retry_after.append(r.headers.get("retry-after"))
                    await asyncio.sleep(backoff_s)
            except httpx.HTTPError:
                code = -1  # connection error or client timeout
            if code == 200:
                latencies.append(time.perf_counter() - t0)
            codes[code] = codes.get(code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(k, http) for k in range(concurrency)))
        wall = time.perf_counter() - start
    ok = codes.get(200, 0)
    ms = sorted(x * 1000 for x in latencies) or [float("nan")]
    return {"requests": sum(codes.values()), "ok": ok, "errors": sum(codes.values()) - ok,
            "codes": {str(k): v for k, v in sorted(codes.items())}, "wall_s": wall,
            "img_s": ok / wall, "p50_ms": pct(ms, 50), "p90_ms": pct(ms, 90),
            "p99_ms": pct(ms, 99), "mean_ms": statistics.fmean(ms),
            "retry_after_missing": sum(1 for v in retry_after if not v)}


def pct(sorted_ms: list[float], q: float) -> float:
    return float(np.percentile(sorted_ms, q))


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match[1]) if match else 0.0


def mean_batch(before: str, after: str) -> float:
    calls = _metric(after, "ocrnet_batch_size_count") - _metric(before, "ocrnet_batch_size_count")
    images = _metric(after, "ocrnet_batch_size_sum") - _metric(before, "ocrnet_batch_size_sum")
    return images / calls if calls else float("nan")


def run_overload(package: Path, images: list[bytes], args: argparse.Namespace) -> dict:
    import threading

    with Server(package, "--max-queue", str(args.overload_queue)) as server:
        asyncio.run(load(server.url, images, concurrency=4, requests=8, seconds=30))  # warm
        rss_before = server.rss_mb()
        peak = [rss_before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], server.rss_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        waves, rss_after = [], []
        for _ in range(2):
            waves.append(asyncio.run(load(
                server.url, images, concurrency=args.overload_concurrency,
                requests=args.overload_concurrency * 1000, seconds=args.overload_seconds,
                backoff_s=0.1)))
            time.sleep(1.0)
            rss_after.append(server.rss_mb())
        done.set()
        sampler.join()
        clean_exit = server.stop()
    codes: dict[str, int] = {}
    for wave in waves:
        for k, v in wave["codes"].items():
            codes[k] = codes.get(k, 0) + v
    return {"concurrency": args.overload_concurrency, "max_queue": args.overload_queue,
            "seconds_per_wave": args.overload_seconds, "codes": codes,
            "img_s": statistics.fmean(w["img_s"] for w in waves),
            "p50_ms_ok": statistics.fmean(w["p50_ms"] for w in waves),
            "p99_ms_ok": max(w["p99_ms"] for w in waves),
            "retry_after_missing": sum(w["retry_after_missing"] for w in waves),
            "rss_mb_before": rss_before, "rss_mb_peak": peak[0],
            "rss_mb_after_wave1": rss_after[0], "rss_mb_after_wave2": rss_after[1],
            "clean_exit": clean_exit}


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


def markdown(r: dict) -> str:
    e, m = r["engine"], r["machine"]
    lines = [
        f"`{r['command']}` — {r['date']}, {m['cpu']}, {m['cores']} cores (1-min load average "
        f"{m['load_avg_1m_at_start']:.1f} at the start, {m['load_avg_1m_at_end']:.1f} at the end); "
        f"package {r['backend']} {r['precision']} "
        f"{'x'.join(map(str, r['input_shape']))}, {r['input_shape'][2]}x{r['input_shape'][3]} "
        "PNG scenes.",
        "",
        "| what | concurrency | img/s | vs engine | p50 ms | p90 ms | p99 ms | p99/p50 | errors "
        "| mean batch |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| engine alone (`ocrnet bench`, batch {e['batch']}; mean of {e['img_s_before']:.2f} "
        f"before and {e['img_s_after']:.2f} after the server) | – | {e['img_s']:.2f} | 1.00x "
        f"| {_f(e['p50_ms'])} | {_f(e['p90_ms'])} | {_f(e['p99_ms'])} | – | – | {e['batch']} |",
    ]
    for s in r["server"]:
        lines.append(
            f"| {s.get('what', '`ocrnet serve` /v1')} | {s['concurrency']} | {s['img_s']:.2f} | "
            f"{s['img_s'] / e['img_s']:.2f}x | {s['p50_ms']:.0f} | {s['p90_ms']:.0f} | "
            f"{s['p99_ms']:.0f} | {s['p99_ms'] / s['p50_ms']:.2f} | {s['errors']} of "
            f"{s['requests']} | {s['mean_batch']:.2f} |")
    o = r["overload"]
    lines += [
        "",
        f"Overload: {o['concurrency']} clients against `--max-queue {o['max_queue']}`, two waves "
        f"of {o['seconds_per_wave']:g} s (a client waits 0.1 s after a 503): answers by status "
        f"{o['codes']} "
        f"(-1 = connection error or client timeout), {o['img_s']:.2f} img/s served, "
        f"p50/p99 of the 200s {o['p50_ms_ok']:.0f}/{o['p99_ms_ok']:.0f} ms, 503s without "
        f"Retry-After: {o['retry_after_missing']}. Server RSS {o['rss_mb_before']:.0f} MB "
        f"before, {o['rss_mb_peak']:.0f} MB peak, {o['rss_mb_after_wave1']:.0f} MB after wave 1, "
        f"{o['rss_mb_after_wave2']:.0f} MB after wave 2. SIGTERM: clean exit 0 "
        f"{'yes' if r['server_clean_exit'] and o['clean_exit'] else 'NO'}.",
    ]
    return "\n".join(lines) + "\n"


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


if __name__ == "__main__":
    raise SystemExit(main())
