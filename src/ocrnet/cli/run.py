"""`ocrnet run`: the one-click job, export -> build each precision -> eval -> bench -> report."""

from __future__ import annotations

import argparse

from ocrnet import defaults
from ocrnet.cli.options import add_trust, positive_float, positive_int
from ocrnet.shapes import scale_arg, size_arg


def register(sub: argparse._SubParsersAction) -> None:
    # Options the user leaves out are not passed: RunConfig (ocrnet.pipeline, which imports the
    # engines) holds their defaults, the one home for them.
    p = sub.add_parser(
        "run", help="one click: export -> build each precision -> eval -> bench -> report",
        description="With no arguments: the offline demo (shipped demo model, generated scenes). "
                    "With --checkpoint and --data-root: the real model on Cityscapes val.",
        argument_default=argparse.SUPPRESS)
    p.add_argument("--checkpoint", help="mmseg checkpoint (default: the shipped demo model)")
    p.add_argument("--data-root", help="Cityscapes root (default: generated demo scenes)")
    p.add_argument("--out", help="run folder (default runs/demo or runs/<ckpt>)")
    p.add_argument("--backend", help=f"engine backend (default: {defaults.BACKEND})")
    p.add_argument("--precisions", nargs="+",
                   help="precisions to build and compare (aliases accepted; default: the "
                        "precisions this machine runs natively)")
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N val images")
    p.add_argument("--scale", type=scale_arg, metavar="WxH",
                   help="keep-ratio resize limit WIDTHxHEIGHT (default: 512x256 demo, "
                        f"{'x'.join(map(str, defaults.SCALE))} Cityscapes)")
    p.add_argument("--calib-count", type=positive_int,
                   help=f"int8 calibration images from the train split "
                        f"(default: {defaults.CALIB_COUNT})")
    p.add_argument("--calib-method", help="int8 calibration method (backend-specific)")
    p.add_argument("--bench-duration", type=positive_float,
                   help="seconds of timed inference per model (default: 5)")
    p.add_argument("--bench-batches", type=positive_int, nargs="+",
                   help="batch sizes to benchmark (default: 1)")
    p.add_argument("--max-drop", type=float, metavar="POINTS",
                   help="exit 1 naming each precision whose 95%% ΔmIoU interval (paired "
                        "bootstrap vs PyTorch eager fp32) reaches below -POINTS")
    p.add_argument("--resamples", type=positive_int,
                   help="bootstrap resamples for the ΔmIoU intervals (default: 2000)")
    p.add_argument("--mode", choices=("whole", "slide"),
                   help="the eval steps' test mode: whole image, or sliding window with the "
                        "packages built at --crop (default: whole)")
    p.add_argument("--crop", type=size_arg, metavar="HxW",
                   help="slide's tile (default: 512x1024 within the image)")
    p.add_argument("--stride", type=size_arg, metavar="HxW",
                   help="slide's step (default: two thirds of the crop)")
    add_trust(p, package=False)  # the run opens the user's checkpoint, never others' packages
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ocrnet.pipeline import RunConfig
    from ocrnet.pipeline import run as run_pipeline

    opts = {k: v for k, v in vars(args).items() if k not in ("handler", "verb")}
    if "out" not in opts:
        checkpoint = opts.get("checkpoint")
        opts["out"] = "runs/demo" if checkpoint is None else f"runs/{Path(checkpoint).stem}"
    for size in ("scale", "crop", "stride"):
        if size in opts:
            opts[size] = tuple(opts[size])
    run_pipeline(RunConfig(**opts))
    return 0
