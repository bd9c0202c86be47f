"""`ocrnet bench MODEL...`: latency and throughput, interleaved, with ratios to the first MODEL."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ocrnet.errors import OcrnetError

if TYPE_CHECKING:
    from ocrnet.bench import BenchReport


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="latency and throughput of engines/checkpoints, side by side",
        description="Measure each MODEL at each batch size, interleaved round-robin so machine "
                    "drift hits all alike; ratios are throughput relative to the first MODEL.")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="engine package directory or .pth checkpoint (PyTorch eager baseline)")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (default: 1)")
    p.add_argument("--shape", default="1024x2048", help="input HEIGHTxWIDTH (default: 1024x2048)")
    warm = p.add_mutually_exclusive_group()
    warm.add_argument("--warmup", type=int, help="warm-up calls after the first inference")
    warm.add_argument("--warmup-s", type=float, help="warm-up seconds (default: 1)")
    timed = p.add_mutually_exclusive_group()
    timed.add_argument("--iterations", type=int, help="timed calls per model x batch")
    timed.add_argument("--duration", type=float,
                     help="seconds of timed calls per model x batch (default: 10)")
    p.add_argument("--min-iterations", type=int, default=5,
                   help="with --duration, at least this many calls (default: 5)")
    p.add_argument("--threads", type=int, help="inference threads for engines opened here")
    p.add_argument("--streams", type=int, default=1,
                   help="also measure throughput with K requests in flight")
    p.add_argument("--device", default="cpu", help="device for checkpoints/engines (cpu, cuda)")
    p.add_argument("--round-s", type=float, default=0.5,
                   help="length of one model's block in the round-robin (default: 0.5)")
    p.add_argument("--seed", type=int, help="input seed (default: from the clock, recorded)")
    p.add_argument("--end-to-end", metavar="DIR",
                   help="also time image files -> label PNGs for the images in DIR")
    p.add_argument("--isolate", action="store_true",
                   help="measure each MODEL in a process of its own, one after another (for "
                        "models too big to share memory; not interleaved, same inputs)")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the report as JSON")
    p.add_argument("--markdown", metavar="OUT", help="write the tables as Markdown")
    p.add_argument("--plot", metavar="OUT.png", help="write latency/throughput plots (PNG)")
    p.set_defaults(handler=run)


_BENCH_PASSED_ON = ("shape", "warmup", "warmup_s", "iterations", "duration", "min_iterations",
                    "threads", "streams", "device", "round_s", "seed", "end_to_end")


def _bench_isolated(args: argparse.Namespace) -> BenchReport:
    """Run `ocrnet bench` once per model in a fresh process and merge the reports."""
    import json
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    from ocrnet.bench import BenchReport, merge_reports

    if args.seed is None:
        args.seed = time.time_ns() % 2**31  # one seed: every process measures the same inputs
    options = ["--batch", *map(str, args.batch)]
    for name in _BENCH_PASSED_ON:
        value = getattr(args, name)
        if value is not None:
            options += [f"--{name.replace('_', '-')}", str(value)]
    reports = []
    with tempfile.TemporaryDirectory(prefix="ocrnet-bench-") as tmp:
        for i, model in enumerate(args.models):
            out = Path(tmp) / f"{i}.json"
            print(f"[{i + 1}/{len(args.models)}] {model}: own process", file=sys.stderr,
                  flush=True)
            done = subprocess.run([sys.executable, "-m", "ocrnet", "bench", model, *options,
                                   "--json", str(out)], stdout=subprocess.DEVNULL)
            if done.returncode != 0:
                killed = ", killed: out of memory?" if done.returncode < 0 else ""
                raise OcrnetError(f"benchmarking {model} in its own process failed (exit "
                                  f"{done.returncode}{killed}); its messages are above")
            reports.append(BenchReport.from_json(json.loads(out.read_text())))
    return merge_reports(reports)


def run(args: argparse.Namespace) -> int:
    from ocrnet.bench import benchmark

    if args.isolate and len(args.models) > 1:
        report = _bench_isolated(args)
    else:
        report = benchmark(
            args.models, batch=args.batch, shape=args.shape, warmup=args.warmup,
            warmup_s=args.warmup_s, iterations=args.iterations, duration=args.duration,
            min_iterations=args.min_iterations, threads=args.threads, streams=args.streams,
            device=args.device, round_s=args.round_s, seed=args.seed, end_to_end=args.end_to_end,
            progress=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
    print(report.table())
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path, save in ((args.json_out, report.save_json), (args.markdown, report.save_markdown),
                       (args.plot, report.save_plot)):
        if path:
            print(f"wrote {save(path)}", file=sys.stderr)
    return 0
