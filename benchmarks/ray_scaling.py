"""`predict` in one process versus `predict --ray` with 1 and 2 engine actors, side by side.

Same package, same images, one run: in-process `predict` (1 engine thread with OpenVINO's
default pinning, 1 thread with pinning off as in an actor, all cores), then Ray Data on a local
Ray instance with 1 actor x 1 thread and 2 actors x 1 thread. Reports img/s over the whole call
(Ray: shipping the model and starting the actors included), each actor's time per image
(decode, inference, PNG write) and Ray's dispatch overhead: the time actors sat idle between
tasks, per image. It checks that every run wrote the same bytes.
Run it inside a loopback-only network namespace, so the Ray instance binds 127.0.0.1 only:

    sh tools/loopback_only.sh .venv/bin/python benchmarks/ray_scaling.py              # 64 x 256x512
    sh tools/loopback_only.sh .venv/bin/python benchmarks/ray_scaling.py --images 8 --size 128x256
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEMO = Path(__file__).parents[1] / "src" / "ocrnet" / "assets" / "ocrnet_hr18_synthetic_demo.pth"


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def _outputs(folder: Path) -> dict[str, bytes]:
    """The predictions (not the run record, which names each run's own model handle)."""
    from ocrnet.work.record import RECORD_NAME

    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != RECORD_NAME}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def in_process(package: Path, images: Path, out: Path, threads: int | None,
               pinning: bool | None = None) -> dict[str, Any]:
    from ocrnet.engines import open_model
    from ocrnet.predict import predict

    opts: dict[str, Any] = {"threads": threads} if threads else {}
    if pinning is not None:
        opts["pinning"] = pinning
    with open_model(package, **opts) as engine:
        shape = engine.metadata.get("input_shape") or [1, 3, 256, 512]
        engine.infer(np.zeros(shape, np.float32))  # warm-up: first-call allocations
        start = time.perf_counter()
        results = predict(engine, images, out, progress=False)
        seconds = time.perf_counter() - start
    rate = len(results) / seconds
    pin = "" if pinning is None else ", pinning off (as a Ray actor)"
    return {"run": f"in-process, {threads or 'all'} thread(s){pin}", "actors": "-",
            "seconds": seconds, "overall": rate, "started": rate,
            "busy_ms": 1000 * seconds / len(results),
            "idle_ms": None}


def on_ray(package: Path, images: Path, out: Path, workers: int) -> dict[str, Any]:
    from ocrnet.predict import predict_run

    result = predict_run(package, images, out, ray="local", workers=workers, threads=1,
                         progress=False)
    info = result.ray
    used = info["workers_used"]
    images = sum(w["images"] for w in used)
    return {"run": f"Ray Data, {workers} actor(s)", "actors": f"{workers} x 1 thread",
            "seconds": result.seconds, "overall": images / result.seconds,
            # from the first task's start to the last one's end: the rate once the actors run
            "started": images / max(w["busy_s"] + w["idle_between_tasks_s"] for w in used),
            "busy_ms": 1000 * sum(w["busy_s"] for w in used) / images,
            "idle_ms": info["dispatch_overhead_ms_per_image"],
            "per_actor": [w["images"] for w in used], "ray": info}


def _print_table(rows: list[dict]) -> None:
    """The rows as a Markdown table."""
    base = rows[1]["started"]  # in-process with the actors' engine settings
    print("| run | actors | wall s | img/s (whole call) | img/s once started | vs in-process "
          "1 thread, pinning off | ms/img in the engine's process | Ray dispatch idle "
          "ms/img | idle / (busy + idle) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        idle = row["idle_ms"]
        share = "" if idle is None else f"{idle / (idle + row['busy_ms']):.1%}"
        print(f"| {row['run']} | {row['actors']} | {row['seconds']:.1f} | "
              f"{row['overall']:.2f} | {row['started']:.2f} | "
              f"{row['started'] / base:.0%} | {row['busy_ms']:.0f} | "
              f"{'' if idle is None else f'{idle:.1f}'} | {share} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=_size, default=(256, 512), help="HxW (default 256x512)")
    parser.add_argument("--package", type=Path, help="an OpenVINO package (default: build the "
                        "demo model in fp32 at 1x3xHxW)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()

    import ray

    from ocrnet.build import build_package
    from ocrnet.data.synthetic import write_dataset

    work = Path(tempfile.mkdtemp(prefix="ocrnet-ray-bench-"))
    try:
        h, w = args.size
        write_dataset(work / "data", train=0, val=args.images, size=(h, w), workers=0,
                      progress=False)
        images = work / "data" / "leftImg8bit" / "val"
        package = args.package
        if package is None:
            start = time.perf_counter()
            package = build_package(DEMO, work / "pkg", backend="openvino", precision="fp32",
                                    shape=(1, 3, h, w)).path
            print(f"built {package} in {time.perf_counter() - start:.1f} s")
        rows = [in_process(package, images, work / "out-1", 1),
                in_process(package, images, work / "out-1np", 1, pinning=False),
                in_process(package, images, work / "out-all", None)]
        start = time.perf_counter()
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
        ray_start = time.perf_counter() - start
        try:
            rows += [on_ray(package, images, work / f"out-ray{n}", n) for n in (1, 2)]
        finally:
            ray.shutdown()
        reference = _outputs(work / "out-1")
        same = all(_outputs(work / d) == reference
                   for d in ("out-1np", "out-all", "out-ray1", "out-ray2"))

        load = os.getloadavg()
        print(f"\n{args.images} images {h}x{w}, {_cpu()}, {dt.date.today()}, load average "
              f"{load[0]:.1f}, ray.init {ray_start:.1f} s (not in the rows), identical outputs: "
              f"{same}\n")
        _print_table(rows)
        if args.json:
            args.json.write_text(json.dumps({"rows": rows, "identical": same,
                                             "cpu": _cpu(), "ray_init_s": ray_start}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
