"""`ocrnet serve` soaked by a fixed mix of honest and hostile clients, on loopback.

    sh tools/loopback_only.sh .venv/bin/python benchmarks/serve_soak.py [--package PKG]
        [--duration 300]

One package (default: the demo model as an OpenVINO fp32 package, 4x3x256x512, built once into
--out, as benchmarks/serve_load.py does). In turn:

1. engine alone: `ocrnet bench PKG --batch N` (img/s);
2. the server with honest clients only (closed loop, --honest at once) for --baseline-seconds;
3. the soak, --duration seconds (default 300): the same honest clients, plus
   - --slow clients that send headers (Content-Length 100000) and 4 body bytes, then stall
     until the server closes them (408), and reconnect;
   - oversized bodies (a declared Content-Length over --max-body-mb) and undecodable bodies
     (random bytes), each every --hostile-interval seconds;
   - --bombs clients each sending an 11000x5500 (60.5 MP) PNG that is mostly zeros (~200 KB);
   - clients that send a whole valid request and disconnect 50 ms later.
   The server's RSS is sampled every second.

Reports honest img/s (soak and baseline) against the engine, honest p50/p99, every status count
per client kind, RSS at the start, peak and 10 s after the soak, and whether SIGTERM drained to
exit 0. Every phase is bounded in seconds and contacts only 127.0.0.1; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve_client import (
    Server,
    Tally,
    add_package_options,
    bench_engine,
    build_demo_package,
    machine,
    make_images,
    pct,
    post_loop,
    requests_by_code,
)

SLOW_HEAD = (b"POST /v1/segment HTTP/1.1\r\nHost: soak\r\nContent-Type: image/png\r\n"
             b"Content-Length: 100000\r\n\r\n\x89PNG")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_package_options(p, out="runs/serve_soak")
    p.add_argument("--duration", type=float, default=300.0, help="soak seconds (default 300)")
    p.add_argument("--baseline-seconds", type=float, default=60.0)
    p.add_argument("--bench-seconds", type=float, default=15.0)
    p.add_argument("--honest", type=int, default=4, help="honest clients at once")
    p.add_argument("--slow", type=int, default=256, help="slow clients connected at once")
    p.add_argument("--bombs", type=int, default=2, help="clients sending 60 MP PNGs")
    p.add_argument("--hostile-interval", type=float, default=0.5,
                   help="seconds between oversized, undecodable and disconnecting requests "
                        "(0: none)")
    p.add_argument("--markdown", help="also write the report here")
    args = p.parse_args()

    load_at_start = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    package = Path(args.package) if args.package else build_demo_package(out, args)
    manifest = json.loads((package / "ocrnet.json").read_text())
    n, _, h, w = manifest["input"]["shape"]
    images = make_images(out / "images", h, w, count=16)
    bomb = _bomb_png(out / "bomb_11000x5500.png", w / h)

    print(f"[1/3] engine alone: ocrnet bench {package} --batch {n}", flush=True)
    engine = bench_engine(package, n, h, w, args.bench_seconds)
    with Server(package) as server:
        print(f"[2/3] honest clients only, {args.baseline_seconds:g} s", flush=True)
        asyncio.run(_honest_only(server.url, images[:4], args.honest, 10.0))  # warm
        baseline = asyncio.run(_honest_only(server.url, images, args.honest,
                                            args.baseline_seconds))
        print(f"[3/3] soak, {args.duration:g} s", flush=True)
        rss = RssSampler(server)
        soak = asyncio.run(_soak(server, images, bomb, args))
        time.sleep(10.0)
        rss.stop()
        clean_exit = server.stop()
    report = {"machine": {**machine(), "load_avg_1m_at_start": load_at_start},
              "package": str(package), "backend": manifest["backend"],
              "precision": manifest["precision"], "input_shape": [n, 3, h, w],
              "engine_img_s": engine["img_s"], "baseline": baseline, "soak": soak,
              "rss_mb": rss.samples, "clean_exit": clean_exit, "args": vars(args),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    (out / "serve_soak.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


def _bomb_png(path: Path, aspect: float) -> bytes:
    """60.5 MP (11000 wide, at the package's aspect ratio), mostly zeros: ~200 KB of PNG."""
    import cv2

    if not path.exists():
        height = round(11000 / aspect)
        img = np.zeros((height, 11000, 3), np.uint8)
        img[100:400, 200:900] = (40, 120, 200)
        path.write_bytes(cv2.imencode(".png", img)[1].tobytes())
    return path.read_bytes()


class RssSampler:
    """The server's RSS (MB) once a second, on a thread, until `stop`."""

    def __init__(self, server: Server) -> None:
        self.samples: list[float] = []
        self._done = threading.Event()
        self._server = server
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            self.samples.append(round(self._server.rss_mb(), 1))
            self._done.wait(1.0)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


# --- clients -----------------------------------------------------------------------------------
async def _post_loop(tally: Tally, kind: str, url: str, bodies: list[bytes], stop_at: float,
                     pause_s: float = 0.0) -> None:
    """One client of `kind` on its own connection, cycling through `bodies`."""
    import httpx

    async with httpx.AsyncClient(timeout=300) as http:
        await post_loop(http, url, itertools.cycle(bodies), tally, kind, stop_at=stop_at,
                        pause_s=pause_s)


async def _slow_client(tally: Tally, port: int, stop_at: float) -> None:
    """Headers and 4 body bytes, then nothing until the server answers and closes."""
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(SLOW_HEAD)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), max(0.1, stop_at - time.monotonic()))
            tally.add("slow", int(answer.split(b" ", 2)[1]) if answer[:5] == b"HTTP/" else -1)
            writer.close()
        except asyncio.TimeoutError:  # still stalled when the soak ended: not an answer
            return
        except (OSError, ValueError, IndexError):
            tally.add("slow", -1)
            await asyncio.sleep(0.1)


async def _oversized(tally: Tally, port: int, stop_at: float, interval: float) -> None:
    """A Content-Length of 1 GB (over any --max-body-mb), a few bytes sent."""
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(SLOW_HEAD.replace(b"100000", b"1000000000"))
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), 30)
            tally.add("oversized", int(answer.split(b" ", 2)[1]))
            writer.close()
        except (OSError, asyncio.TimeoutError, ValueError, IndexError):
            tally.add("oversized", -1)
        await asyncio.sleep(interval)


async def _disconnecting(tally: Tally, port: int, body: bytes, stop_at: float,
                         interval: float) -> None:
    """A whole valid request, then the connection closed 50 ms later (the server counts 499)."""
    head = (b"POST /v1/segment HTTP/1.1\r\nHost: soak\r\nContent-Type: image/png\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    while time.monotonic() < stop_at:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head + body)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()
            tally.add("disconnecting", 0)  # sent; its answer is never read
        except OSError:
            tally.add("disconnecting", -1)
        await asyncio.sleep(interval)


async def _honest_only(url: str, images: list[bytes], concurrency: int, seconds: float) -> dict:
    tally = Tally()
    t0 = time.monotonic()
    stop_at = t0 + seconds
    await asyncio.gather(*(_post_loop(tally, "honest", url, images[k:] + images[:k], stop_at)
                           for k in range(concurrency)))
    return _honest_summary(tally, time.monotonic() - t0)


async def _soak(server: Server, images: list[bytes], bomb: bytes,
                args: argparse.Namespace) -> dict:
    tally = Tally()
    t0 = time.monotonic()
    stop_at = t0 + args.duration
    port, url, every = server.port, server.url, args.hostile_interval
    tasks = [_post_loop(tally, "honest", url, images[k:] + images[:k], stop_at)
             for k in range(args.honest)]
    tasks += [_slow_client(tally, port, stop_at) for _ in range(args.slow)]
    tasks += [_post_loop(tally, "bomb_60mp", url, [bomb], stop_at) for _ in range(args.bombs)]
    if every > 0:  # --hostile-interval 0: none of these (e.g. slow clients alone)
        tasks += [_post_loop(tally, "undecodable", url, [os.urandom(100_000)], stop_at,
                             pause_s=every),
                  _oversized(tally, port, stop_at, every),
                  _disconnecting(tally, port, images[0], stop_at, every)]
    await asyncio.gather(*tasks)
    summary = _honest_summary(tally, time.monotonic() - t0)
    summary["codes"] = {kind: dict(sorted(c.items())) for kind, c in sorted(tally.codes.items())}
    summary["server_requests_total"] = requests_by_code(server.metrics())
    return summary


def _honest_summary(tally: Tally, seconds: float) -> dict:
    ok = sorted(tally.ok_ms.get("honest", []))
    codes = tally.codes.get("honest", Counter())
    return {"seconds": seconds, "img_s": len(ok) / seconds, "ok": len(ok),
            "errors": sum(v for k, v in codes.items() if k != 200),
            "p50_ms": pct(ok, 50), "p99_ms": pct(ok, 99)}


# --- report --------------------------------------------------------------------------------
def markdown(r: dict) -> str:
    m, b, s, rss = r["machine"], r["baseline"], r["soak"], r["rss_mb"]
    engine = r["engine_img_s"]
    kinds = ", ".join(f"{kind} {codes}" for kind, codes in s["codes"].items())
    lines = [
        f"`{r['command']}` — {r['date']}, {m['cpu']}, {m['cores']} cores (1-min load average "
        f"{m['load_avg_1m_at_start']:.1f} at the start, {m['load_avg_1m_at_end']:.1f} at the "
        f"end); package {r['backend']} {r['precision']} {'x'.join(map(str, r['input_shape']))}.",
        "",
        "| honest clients (concurrency "
        f"{r['args']['honest']}) | seconds | img/s | vs engine | p50 ms | p99 ms | p99/p50 "
        "| errors |",
        "|---|---|---|---|---|---|---|---|",
        f"| engine alone (`ocrnet bench`) | {r['args']['bench_seconds']:g} | {engine:.2f} "
        "| 1.00x | – | – | – | – |",
    ]
    for name, row in (("no attack", b), ("soak (the whole mix)", s)):
        lines.append(f"| {name} | {row['seconds']:.0f} | {row['img_s']:.2f} | "
                     f"{row['img_s'] / engine:.2f}x | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} "
                     f"| {row['p99_ms'] / row['p50_ms']:.2f} | {row['errors']} of "
                     f"{row['ok'] + row['errors']} |")
    start, end = rss[0], statistics.fmean(rss[-5:])
    lines += [
        "",
        f"Soak vs no attack: {s['img_s'] / b['img_s']:.2f}x. Answers by client kind and status "
        f"(-1: connection error or client timeout; disconnecting: 0 = sent and dropped): "
        f"{kinds}. The server counted `ocrnet_requests_total` {s['server_requests_total']}. "
        f"Server RSS {start:.0f} MB at the start, {max(rss):.0f} MB peak, {end:.0f} MB 10 s after "
        f"the soak ({(end - start) / start * 100:+.1f}%), sampled every second "
        f"({len(rss)} samples in serve_soak.json). SIGTERM: clean exit 0 "
        f"{'yes' if r['clean_exit'] else 'NO'}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
