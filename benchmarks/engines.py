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
import time
from pathlib import Path

from ocrnet.bench import BenchSettings, benchmark
from ocrnet.bench.isolate import benchmark_isolated
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


def _parse(shape: str) -> tuple[int, int, int]:
    """'512x1024' (batch 1) or '8x1024x2048' -> (N, H, W)."""
    dims = [int(v) for v in shape.lower().split("x")]
    return (1, *dims) if len(dims) == 2 else (dims[0], dims[1], dims[2])


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    parser.add_argument("--shapes", nargs="+", default=["512x1024", "1024x2048"])
    parser.add_argument("--rows", nargs="+", default=DEFAULT_ROWS,
                        help="backend:precision, or backend:precision:plain for the graph "
                             "without Winograd (to see what it buys), or "
                             "backend:int8:maxdrop=X for int8 built within X mIoU points "
                             "(accuracy control on held-out generated train scenes)")
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
    return parser.parse_args()


def _packages(args: argparse.Namespace, n: int, h: int, w: int) -> tuple[list[str], dict[str, str]]:
    """The models of one shape's table (the checkpoint first, then a package per row, built
    once into --work), and the rows this machine cannot build, with why."""
    work = Path(args.work)
    models: list[str] = [args.checkpoint]
    skipped: dict[str, str] = {}
    for row in args.rows:
        backend, precision, *variant = row.split(":")
        winograd = False if variant == ["plain"] else args.winograd
        budget = dict(v.replace("maxdrop=", "max_drop=").split("=", 1) for v in variant
                      if v.startswith("maxdrop="))
        pkg = work / "-".join([backend, precision, *variant, f"{n}x{h}x{w}"])
        if not (pkg / "ocrnet.json").exists():
            # A budget also needs held-out labelled scenes: its own, larger set.
            calib = (_calibration_root(work / "holdout" if budget else work, h, w,
                                       2 * args.calib_count if budget else args.calib_count)
                     if precision.startswith("int8") else None)
            started = time.perf_counter()
            try:
                # from the checkpoint: each build exports the graph its precision wants
                build_package(args.checkpoint, pkg, backend=backend, precision=precision,
                              shape=[n, 3, h, w], calib_dir=calib, outputs=args.outputs,
                              winograd=winograd,
                              **{k: float(v) for k, v in budget.items()},
                              calib_count=args.calib_count, overwrite=True)
            except OcrnetError as err:
                skipped[row] = str(err)
                print(f"skip {row}: {err}")
                continue
            print(f"built {pkg} in {time.perf_counter() - started:.0f} s")
        models.append(str(pkg))
    return models, skipped


def main() -> None:
    args = _parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for shape in args.shapes:
        n, h, w = _parse(shape)
        models, skipped = _packages(args, n, h, w)
        settings = BenchSettings(batch=n, shape=(h, w), iterations=args.iterations,
                                 duration=None if args.iterations else args.duration,
                                 threads=args.threads)
        if args.isolate:  # a process per model: batch 8 at 1024x2048 does not fit them all
            report = benchmark_isolated(models, settings)
        else:
            report = benchmark(models, settings, progress=print)
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
