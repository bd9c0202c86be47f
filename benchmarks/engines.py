"""Every backend x precision side by side with PyTorch eager fp32, in one process.

    python benchmarks/engines.py                        # 512x1024 and 1024x2048, all rows
    python benchmarks/engines.py --shapes 512x1024 --duration 10 --rows openvino:fp32 openvino:int8
    python benchmarks/engines.py --shapes 8x1024x2048 --iterations 3 --isolate   # batch 8

Packages are built once into --work (reused on later runs: delete it or pass another --work
to rebuild) from the checkpoint (default: the shipped demo model, i.e. trained weights, so int8
calibration is meaningful), each with the graph its precision wants; int8 calibrates on
generated train scenes at the benchmark's resolution. The measurement is
`ocrnet.bench.benchmark`: interleaved rounds, monotonic clock, ratios to the first model (eager
fp32). A row a backend cannot run on this machine is reported and skipped.
Not a test: run it on a quiet machine and paste the table into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from ocrnet.bench import BenchReport, benchmark
from ocrnet.build import build_package
from ocrnet.errors import OcrnetError
from ocrnet.pipeline import DEMO_CHECKPOINT

DEFAULT_ROWS = ["onnxruntime:fp32", "onnxruntime:int8", "openvino:fp32", "openvino:bf16",
                "openvino:fp16", "openvino:int8"]


def _calibration_root(work: Path, h: int, w: int, count: int) -> Path:
    from ocrnet.data.synthetic import write_dataset

    root = work / f"calib_{h}x{w}"
    if not (root / "synthetic.json").exists():
        write_dataset(root, train=count, val=0, size=(h, w), seed=0, progress=False)
    return root


def _isolated(models: list[str], n: int, h: int, w: int, args: argparse.Namespace,
              out: Path) -> BenchReport:
    """`ocrnet bench --isolate`: each model in a process of its own (batch 8 at 1024x2048 does
    not fit eager + several engines in one process's memory here)."""
    report = out / f"isolated_{n}x{h}x{w}.json"
    command = [sys.executable, "-m", "ocrnet", "bench", *models, "--isolate", "--batch", str(n),
               "--shape", f"{h}x{w}", "--json", str(report)]
    command += (["--iterations", str(args.iterations)] if args.iterations
                else ["--duration", str(args.duration)])
    if args.threads:
        command += ["--threads", str(args.threads)]
    subprocess.run(command, check=True)
    return BenchReport.from_json(json.loads(report.read_text()))


def _parse(shape: str) -> tuple[int, int, int]:
    """'512x1024' (batch 1) or '8x1024x2048' -> (N, H, W)."""
    dims = [int(v) for v in shape.lower().split("x")]
    return (1, *dims) if len(dims) == 2 else (dims[0], dims[1], dims[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    parser.add_argument("--shapes", nargs="+", default=["512x1024", "1024x2048"])
    parser.add_argument("--rows", nargs="+", default=DEFAULT_ROWS,
                        help="backend:precision, or backend:precision:plain for the graph "
                             "without Winograd (to see what it buys)")
    parser.add_argument("--duration", type=float, default=20.0, help="timed seconds per row")
    parser.add_argument("--iterations", type=int, help="timed calls per row instead of seconds")
    parser.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    parser.add_argument("--calib-count", type=int, default=16)
    parser.add_argument("--outputs", nargs="+", default=["labels"],
                        help="package outputs (default: labels, what a deployment reads)")
    parser.add_argument("--isolate", action="store_true",
                        help="measure each model in its own process (not interleaved)")
    parser.add_argument("--winograd", action=argparse.BooleanOptionalAction, default=None,
                        help="force Winograd on/off (default: build's choice per precision)")
    parser.add_argument("--work", default="runs/bench_engines")
    parser.add_argument("--out", default="runs/bench_engines/results")
    args = parser.parse_args()

    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for shape in args.shapes:
        n, h, w = _parse(shape)
        models: list[str] = [args.checkpoint]
        skipped: dict[str, str] = {}
        for row in args.rows:
            backend, precision, *variant = row.split(":")
            winograd = False if variant == ["plain"] else args.winograd
            pkg = work / "-".join([backend, precision, *variant, f"{n}x{h}x{w}"])
            if not (pkg / "ocrnet.json").exists():
                calib = (_calibration_root(work, h, w, args.calib_count)
                         if precision == "int8" else None)
                started = time.perf_counter()
                try:
                    # from the checkpoint: each build exports the graph its precision wants
                    build_package(args.checkpoint, pkg, backend=backend, precision=precision,
                                  shape=[n, 3, h, w], calib_dir=calib, outputs=args.outputs,
                                  winograd=winograd,
                                  calib_count=args.calib_count, overwrite=True)
                except OcrnetError as err:
                    skipped[row] = str(err)
                    print(f"skip {row}: {err}")
                    continue
                print(f"built {pkg} in {time.perf_counter() - started:.0f} s")
            models.append(str(pkg))
        if args.isolate:
            report = _isolated(models, n, h, w, args, out)
        else:
            report = benchmark(models, batch=n, shape=(h, w),
                               duration=None if args.iterations else args.duration,
                               iterations=args.iterations, threads=args.threads, progress=print)
        print(report.table())
        data = report.to_json()
        data["skipped"] = skipped
        data["command"] = "python benchmarks/engines.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if v not in (None, False))
        (out / f"engines_{n}x{h}x{w}.json").write_text(json.dumps(data, indent=1) + "\n")
        (out / f"engines_{n}x{h}x{w}.md").write_text(report.markdown())


if __name__ == "__main__":
    main()
