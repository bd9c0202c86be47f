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
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve_client import (
    Server,
    Tally,
    add_package_options,
    bench_engine,
    build_demo_package,
    latency_summary,
    machine,
    make_images,
    mean_batch,
    post_loop,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_package_options(p, out="runs/serve_load")
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
    return p.parse_args()


def main() -> int:
    args = parse_args()
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
    with Server(package) as server:
        rows = server_rows(server, package, images, args)
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


def server_rows(server: Server, package: Path, images: list[bytes],
                args: argparse.Namespace) -> list[dict]:
    """One row per /v1 concurrency level, then per /v2 level (benchmarks/serve_v2.py)."""
    asyncio.run(load(server.url, images, concurrency=4, requests=8, seconds=30))  # warm
    rows = []
    for c in args.concurrency:
        before = server.metrics()
        stats = asyncio.run(load(server.url, images, concurrency=c,
                                 requests=max(args.requests, 4 * c), seconds=args.seconds))
        stats.update(mean_batch=mean_batch(before, server.metrics()), concurrency=c)
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
    return rows


# --- load ----------------------------------------------------------------------------------
async def load(url: str, images: list[bytes], *, concurrency: int, requests: int,
               seconds: float, backoff_s: float = 0.0) -> dict:
    """Closed loop: `concurrency` clients, each sending its next image after an answer
    (after `backoff_s` more when the answer was 503), `requests` in all."""
    import httpx

    tally = Tally()
    stop_at = time.monotonic() + seconds
    bodies = (images[i % len(images)] for i in range(requests))  # shared: one budget
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(post_loop(http, url, bodies, tally, "v1", stop_at=stop_at,
                                         backoff_s=backoff_s) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    codes = tally.codes.get("v1", {})
    ok = codes.get(200, 0)
    return {"requests": sum(codes.values()), "ok": ok, "errors": sum(codes.values()) - ok,
            "codes": {str(k): v for k, v in sorted(codes.items())}, "wall_s": wall,
            "img_s": ok / wall, **latency_summary(tally.ok_ms.get("v1", [])),
            "retry_after_missing": sum(1 for v in tally.retry_after if not v)}


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
