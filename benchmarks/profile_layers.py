"""Where the time goes: the engines table (ratios to eager fp32) and a per-block profile with a
roofline, for the same packages, in one run.

    python benchmarks/profile_layers.py --shape 256x512 --rows openvino:fp32 --iterations 2
    python benchmarks/profile_layers.py --shape 1024x2048 --rows openvino:fp32 openvino:int8 \
        onnxruntime:fp32 --iterations 4 --out runs/profile          # the quiet-machine run

1. Packages are built once into --work from the checkpoint (default: the shipped demo model;
   int8 calibrates on --calib-count generated train scenes at the profiled size), each with
   the graph its precision wants, and each with its layer map (`layers.json`).
2. `ocrnet.bench.benchmark` times PyTorch eager fp32 and every package interleaved (skip it
   with --no-timing): mean ms, ratio to eager fp32, model GFLOP/s.
3. `ocrnet.bench.profile` measures this machine's ceilings (a convolution probe per precision
   the CPU runs natively, a bandwidth probe) and each package's per-layer times, grouped by
   block, in the same process.

Writes --out/engines.{md,json} and --out/profile.{txt,md,json,png}; prints the CPU, its flags
and the load average with every table. Not a test: on a loaded machine say so with the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ocrnet.bench import BenchSettings, benchmark
from ocrnet.bench.profile import write_profile
from ocrnet.build import build_package
from ocrnet.errors import OcrnetError
from ocrnet.machine import machine_info
from ocrnet.pipeline import DEMO_CHECKPOINT


def calibration_root(work: Path, h: int, w: int, count: int) -> Path:
    """Generated train scenes at the profiled size (int8 calibrates on them)."""
    from ocrnet.data.synthetic import write_dataset

    root = work / f"calib_{h}x{w}_{count}"
    if not (root / "synthetic.json").exists():
        write_dataset(root, train=count, val=0, size=(h, w), seed=0, progress=False)
    return root


def build_rows(args: argparse.Namespace, n: int, h: int, w: int) -> list[str]:
    """One package per backend:precision row, built unless --work holds it already."""
    work = Path(args.work)
    paths = []
    for row in args.rows:
        backend, precision = row.split(":")[:2]
        pkg = work / f"{backend}-{precision}-{n}x{h}x{w}"
        if not (pkg / "layers.json").exists():  # also rebuilds packages older than layer maps
            calib = (calibration_root(work, h, w, args.calib_count)
                     if precision.startswith("int8") else None)
            started = time.perf_counter()
            try:
                build_package(args.checkpoint, pkg, backend=backend, precision=precision,
                              shape=[n, 3, h, w], calib_dir=calib, outputs=["labels"],
                              calib_count=args.calib_count, overwrite=True)
            except OcrnetError as err:
                print(f"skip {row}: {err}")
                continue
            print(f"built {pkg} in {time.perf_counter() - started:.0f} s")
        paths.append(str(pkg))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    parser.add_argument("--shape", default="1024x2048", help="HxW or NxHxW (batch N)")
    parser.add_argument("--rows", nargs="+", default=["openvino:fp32", "openvino:int8"],
                        help="backend:precision packages to time and profile")
    parser.add_argument("--iterations", type=int, default=3,
                        help="timed calls per row, and profiled calls per package")
    parser.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    parser.add_argument("--calib-count", type=int, default=8)
    parser.add_argument("--no-timing", action="store_true",
                        help="profile only (skip the interleaved engines table)")
    parser.add_argument("--work", default="runs/profile/packages")
    parser.add_argument("--out", default="runs/profile")
    args = parser.parse_args()

    dims = [int(v) for v in args.shape.lower().split("x")]
    n, h, w = (1, *dims) if len(dims) == 2 else dims
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mc = machine_info()
    print(f"machine: {mc['cpu']}, {mc['cores_usable']} cores, flags "
          f"{' '.join(mc['cpu_flags'])}, load {mc['load_avg_1m']}")
    packages = build_rows(args, n, h, w)
    if not args.no_timing:
        settings = BenchSettings(batch=n, shape=(h, w), iterations=args.iterations,
                                 threads=args.threads)
        report = benchmark([args.checkpoint, *packages], settings, progress=print)
        print(report.table())
        (out / "engines.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
        (out / "engines.md").write_text(report.markdown())
    profile = write_profile(packages, out, shape=(h, w), batch=n,
                            iterations=args.iterations, threads=args.threads)
    print(profile.table())
    print(f"wrote {out}/engines.{{md,json}} and {out}/profile.{{txt,md,json,png}}")


if __name__ == "__main__":
    main()
