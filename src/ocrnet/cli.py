"""`ocrnet VERB ...`: one entry point, a thin layer over the Python API.

Each verb has an `_add_<verb>(subparsers)` that declares its options (named as in the Python
API) and a handler that calls the API. User errors (`OcrnetError`) print one line, exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ocrnet import __version__
from ocrnet.errors import OcrnetError

Handler = Callable[[argparse.Namespace], int | None]


# --- inspect ---------------------------------------------------------------------------------
def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="describe a checkpoint: variant, parameters, classes, config")
    p.add_argument("checkpoint", help="a .pth checkpoint (mmseg layout or bare state dict)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling (runs code from the file: only for files you trust)")
    p.add_argument("--json", dest="json_out", help="also write the description as JSON here")
    p.set_defaults(handler=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from ocrnet.model.checkpoint import describe_checkpoint

    info = describe_checkpoint(args.checkpoint, trust_checkpoint=args.trust_checkpoint)
    config = info.pop("config", None)
    for key, value in info.items():
        print(f"{key:>14}: {value}")
    if config:
        print("\nconfig found in meta:\n" + config)
    if args.json_out:
        import json
        from pathlib import Path

        Path(args.json_out).write_text(json.dumps({**info, "config": config}, indent=2) + "\n")
    return 0


# --- eval ------------------------------------------------------------------------------------
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="mIoU / per-class IoU on Cityscapes for a model or predictions")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="a .pth checkpoint (run by the PyTorch engine)")
    what.add_argument("--model", help="an engine package folder (from `ocrnet build`)")
    what.add_argument("--predictions",
                      help="score saved <city>_<seq>_<frame>*.png labelIds predictions instead")
    p.add_argument("--data-root", required=True,
                   help="Cityscapes root holding leftImg8bit/ and gtFine/")
    p.add_argument("--split", default="val", help="split to evaluate (default: val)")
    p.add_argument("--limit", type=int, help="only the first N images (sorted by name)")
    p.add_argument("--batch-size", type=int, default=1, help="images per engine call (default 1)")
    p.add_argument("--scale", help="keep-ratio resize limit WxH (default 2048x1024, mmseg's)")
    p.add_argument("--resize", choices=("logits", "labels"), default="logits",
                   help="how predictions return to the label size when --scale shrinks the "
                        "input: bilinear logits then argmax (mmseg-exact, default) or nearest "
                        "labels")
    p.add_argument("--device", default="cpu", help="device for --checkpoint/--model (default cpu)")
    p.add_argument("--workers", type=int, help="decode threads (default min(4, CPUs))")
    p.add_argument("--save-predictions", metavar="DIR",
                   help="write <city>_<seq>_<frame>_pred_labelIds.png (official labelIds) here")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable or inconsistent images/labels, list them in the JSON")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the results as JSON here")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    p.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from ocrnet.evaluate import evaluate, evaluate_predictions

    if args.predictions:
        if args.save_predictions:
            raise OcrnetError("--save-predictions needs a model (--checkpoint or --model); "
                              "with --predictions the predictions are already saved")
        result = evaluate_predictions(args.predictions, args.data_root, args.split, args.limit,
                                      skip_bad=args.skip_bad, workers=args.workers,
                                      progress=args.progress)
    else:
        from ocrnet.data.transforms import parse_scale

        result = evaluate(
            args.checkpoint or args.model, args.data_root, args.split, args.limit,
            args.batch_size, scale=parse_scale(args.scale) if args.scale else None,
            device=args.device, save_predictions=args.save_predictions,
            skip_bad=args.skip_bad, resize=args.resize, workers=args.workers,
            progress=args.progress,
        )
    print(result.table())
    print(f"\n{result.num_images} images ({args.split}) from {args.data_root}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} sample(s):")
        for skipped in result.skipped:
            print(f"  {skipped.path}: {skipped.reason}")
    if args.json_out:
        import json
        from pathlib import Path

        Path(args.json_out).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0


# --- synth -----------------------------------------------------------------------------------
def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write synthetic street scenes in the Cityscapes layout")
    p.add_argument("--out", required=True, help="dataset root to write (leftImg8bit/, gtFine/)")
    p.add_argument("--train", type=int, default=8, help="training images (default 8)")
    p.add_argument("--val", type=int, default=4, help="validation images (default 4)")
    p.add_argument("--size", default="256x512", help="image size HxW (default 256x512)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--workers", type=int, help="processes (default: all CPU cores)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    p.set_defaults(handler=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from ocrnet.data.synthetic import parse_size, write_dataset

    result = write_dataset(args.out, train=args.train, val=args.val, size=parse_size(args.size),
                           seed=args.seed, workers=args.workers, progress=args.progress)
    counts = ", ".join(f"{n} {split}" for split, n in result["counts"].items())
    print(f"wrote {counts} images ({args.size}) to {result['root']}")
    print(f"manifest: {result['manifest']}")
    print(f"next: ocrnet eval --data-root {result['root']} --split val --checkpoint MODEL.pth")
    return 0


# --- bench -----------------------------------------------------------------------------------
def _add_bench(sub: argparse._SubParsersAction) -> None:
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
    run = p.add_mutually_exclusive_group()
    run.add_argument("--iterations", type=int, help="timed calls per model x batch")
    run.add_argument("--duration", type=float,
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
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the report as JSON")
    p.add_argument("--markdown", metavar="OUT", help="write the tables as Markdown")
    p.add_argument("--plot", metavar="OUT.png", help="write latency/throughput plots (PNG)")
    p.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from ocrnet.bench import benchmark

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


# --- train -----------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    from ocrnet.train import TrainConfig

    d = TrainConfig(data_root="", out_dir="")
    p = sub.add_parser("train", help="train OCRNet on a Cityscapes-layout dataset (mmseg losses)")
    p.add_argument("--data-root", required=True, help="Cityscapes-layout root (train split used)")
    p.add_argument("--out-dir", required=True, help="where checkpoints go (latest.pth, final.pth)")
    p.add_argument("--variant", default=d.variant, help="hr18s, hr18 or hr48")
    p.add_argument("--iters", type=int, default=d.iters)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--crop", default="x".join(map(str, d.crop)), help="crop HxW")
    p.add_argument("--scale", default="x".join(map(str, d.scale)),
                   help="base keep-ratio scale WxH (long x short), randomly scaled by --ratio")
    p.add_argument("--ratio", nargs=2, type=float, default=d.ratio_range, metavar=("MIN", "MAX"))
    p.add_argument("--optimizer", default=d.optimizer, choices=["sgd", "adamw"])
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-iters", type=int, default=d.warmup_iters)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--checkpoint-interval", type=int, default=d.checkpoint_interval)
    p.add_argument("--val-interval", type=int, default=d.val_interval,
                   help="validate every N iterations (0: only at the end)")
    p.add_argument("--val-limit", type=int, default=d.val_limit)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-resume", action="store_true", help="start over even if latest.pth exists")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import json

    from ocrnet.data.transforms import parse_scale
    from ocrnet.train import TrainConfig, train, validate

    cfg = TrainConfig(
        data_root=args.data_root, out_dir=args.out_dir, variant=args.variant, iters=args.iters,
        batch_size=args.batch_size, crop=parse_scale(args.crop), scale=parse_scale(args.scale),
        ratio_range=tuple(args.ratio), optimizer=args.optimizer, lr=args.lr,
        weight_decay=args.weight_decay, warmup_iters=args.warmup_iters, seed=args.seed,
        checkpoint_interval=args.checkpoint_interval, val_interval=args.val_interval,
        val_limit=args.val_limit, threads=args.threads,
    )
    final = train(cfg, resume=not args.no_resume, progress=not args.no_progress)
    from ocrnet.model import model_from_checkpoint

    result = validate(model_from_checkpoint(final), args.data_root, scale=cfg.scale)
    print(json.dumps({"checkpoint": str(final), "val_mIoU": result["mIoU"]}))
    print(f"next: ocrnet eval --checkpoint {final} --data-root {args.data_root} "
          f"--scale {args.scale}")
    return 0


# Verbs are registered here in the order `ocrnet --help` lists them.
_VERBS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_inspect,
    _add_train,
    _add_eval,
    _add_synth,
    _add_bench,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocrnet",
        description="OCRNet (mmseg-exact): export, build engines, evaluate, benchmark, predict.",
    )
    parser.add_argument("--version", action="version", version=f"ocrnet {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for add in _VERBS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except OcrnetError as err:
        print(f"ocrnet {args.verb}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ocrnet {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
