"""`ocrnet bench MODEL...`: latency and throughput, interleaved, with ratios to the first MODEL.

Every option is the `BenchSettings` field of the same name: the defaults shown here are read
from it and its checks run before any model opens (argparse types refuse `--iterations 0` and
the like as usage errors first).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ocrnet.bench.settings import DURATION_S, WARMUP_S, BenchSettings
from ocrnet.cli.options import (
    add_device,
    add_model,
    add_output,
    add_shape,
    add_trust,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from ocrnet.shapes import InputShape

_DEFAULT = BenchSettings()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="latency and throughput of engines/checkpoints, side by side",
        description="Measure each MODEL at each batch size, interleaved round-robin so machine "
                    "drift hits all alike; ratios are throughput relative to the first MODEL.")
    add_model(p, nargs="+", what="engine package folder, .onnx or .pth checkpoint (PyTorch "
                                 "eager); the first is the baseline of the ratios")
    d = _DEFAULT
    p.add_argument("--batch", type=positive_int, nargs="+",
                   help="batch sizes (default: --shape's N, 1 for HxW); with an N other than 1 "
                        "in --shape, --batch may only repeat it")
    add_shape(p, InputShape(1, 3, *d.shape), "; N is the batch size when --batch is not given")
    warm = p.add_mutually_exclusive_group()
    warm.add_argument("--warmup", type=non_negative_int,
                      help="warm-up calls after the first inference")
    warm.add_argument("--warmup-s", type=non_negative_float,
                      help=f"warm-up seconds (default: {WARMUP_S:g})")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--iterations", type=positive_int, help="timed calls per model x batch")
    stop.add_argument("--duration", type=positive_float,
                      help=f"seconds of timed calls per model x batch (default: {DURATION_S:g})")
    p.add_argument("--min-iterations", type=positive_int, default=d.min_iterations,
                   help=f"with --duration, at least this many calls (default: {d.min_iterations})")
    p.add_argument("--threads", type=positive_int, help="inference threads for engines opened here")
    p.add_argument("--streams", type=positive_int, default=d.streams,
                   help="also measure throughput with K requests in flight")
    add_device(p, help="device for checkpoints/engines (cpu, cuda)")
    p.add_argument("--round-s", type=non_negative_float, default=d.round_s,
                   help=f"length of one model's block in the round-robin (default: {d.round_s:g})")
    p.add_argument("--seed", type=non_negative_int,
                   help="input seed (default: from the clock, recorded)")
    p.add_argument("--end-to-end", metavar="DIR",
                   help="also time image files -> label PNGs for the images in DIR")
    add_trust(p)
    p.add_argument("--isolate", action="store_true",
                   help="measure each MODEL in a process of its own, one after another (for "
                        "models too big to share memory; not interleaved, same inputs)")
    p.add_argument("--profile", metavar="DIR",
                   help="instead of timing: per-layer times of each package (OpenVINO, ONNX "
                        "Runtime) grouped by model block against this machine's ceilings, "
                        "measured in the same run; writes DIR/profile.{txt,md,json,png}")
    add_output(p, json_help="write the report as JSON")
    p.add_argument("--markdown", metavar="OUT", help="write the tables as Markdown")
    p.add_argument("--plot", metavar="OUT.png", help="write latency/throughput plots (PNG)")
    p.set_defaults(handler=run)


def settings_of(args: argparse.Namespace) -> BenchSettings:
    """The `BenchSettings` the options name: each field is the option of the same name."""
    return BenchSettings(**{f.name: getattr(args, f.name)
                            for f in dataclasses.fields(BenchSettings)})


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if args.profile:
        from ocrnet.bench.profile import write_profile

        report = write_profile(args.models, args.profile, shape=tuple(settings.shape),
                               batch=settings.batch[0], iterations=args.iterations or 3,
                               threads=settings.threads)
        print(report.table())
        print(f"wrote {args.profile}/profile.{{txt,md,json,png}}", file=sys.stderr)
        return 0
    if args.isolate and len(args.models) > 1:
        from ocrnet.bench.isolate import benchmark_isolated

        report = benchmark_isolated(args.models, settings, progress=args.progress)
    else:
        from ocrnet.bench import benchmark

        def say(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)

        report = benchmark(args.models, settings, progress=say if args.progress else None)
    print(report.table())
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path, save in ((args.json_out, report.save_json), (args.markdown, report.save_markdown),
                       (args.plot, report.save_plot)):
        if path:
            print(f"wrote {save(path)}", file=sys.stderr)
    return 0
