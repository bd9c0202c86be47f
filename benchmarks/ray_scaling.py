"""`predict` in one process versus `predict --ray` with 1 and 2 engine actors, side by side.

Same package, same images, one run: in-process `predict` (engine threads 1, then all cores),
then Ray Data on a local Ray instance with 1 actor x 1 thread and 2 actors x 1 thread. Reports
img/s in steady state (after the first output: what one more image costs) and over the whole
call (Ray: shipping the model and starting the actors included), the per-image overhead of Ray
against in-process at the same threads, and checks that every run wrote the same bytes.
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
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def in_process(package: Path, images: Path, out: Path, threads: int | None) -> dict[str, Any]:
    from ocrnet.engines import open_model
    from ocrnet.predict import predict

    opts = {"threads": threads} if threads else {}
    with open_model(package, **opts) as engine:
        shape = engine.metadata.get("input_shape") or [1, 3, 256, 512]
        engine.infer(np.zeros(shape, np.float32))  # warm-up: first-call allocations
        start = time.perf_counter()
        results = predict(engine, images, out, progress=False)
        seconds = time.perf_counter() - start
    rate = len(results) / seconds
    return {"run": f"in-process, {threads or 'all'} thread(s)", "actors": "-",
            "seconds": seconds, "steady": rate, "overall": rate}


def on_ray(package: Path, images: Path, out: Path, workers: int) -> dict[str, Any]:
    from ocrnet.jobs.predict import predict_on_ray

    result = predict_on_ray(package, images, out, address="local", workers=workers, threads=1,
                            progress=False)
    info = result.ray
    return {"run": f"Ray Data, {workers} actor(s)", "actors": f"{workers} x 1 thread",
            "seconds": result.seconds, "steady": info["steady_images_per_second"],
            "overall": info["images_per_second"],
            "per_actor": [w["images"] for w in info["workers_used"]]}


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
        same = all(_outputs(work / d) == reference for d in ("out-all", "out-ray1", "out-ray2"))

        base = rows[0]["steady"]
        print(f"\n{args.images} images {h}x{w}, {_cpu()}, {dt.date.today()}, "
              f"ray.init {ray_start:.1f} s (not in the rows), identical outputs: {same}\n")
        print("| run | actors | wall s | img/s steady | img/s overall | vs in-process 1 thread "
              "| overhead ms/img |")
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            ratio = row["steady"] / base
            overhead = 1000 / row["steady"] - 1000 / base if row["actors"] == "1 x 1 thread" \
                else None
            print(f"| {row['run']} | {row['actors']} | {row['seconds']:.1f} | "
                  f"{row['steady']:.2f} | {row['overall']:.2f} | {ratio:.2f}x | "
                  f"{'' if overhead is None else f'{overhead:+.1f}'} |")
        if args.json:
            args.json.write_text(json.dumps({"rows": rows, "identical": same,
                                             "cpu": _cpu(), "ray_init_s": ray_start}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
