"""`ocrnet VERB ...`: one entry point, a thin layer over the Python API.

Each verb has an `_add_<verb>(subparsers)` that declares its options (named as in the Python
API) and a handler that calls the API. User errors (`OcrnetError`) print one line, exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ocrnet import __version__
from ocrnet.errors import OcrnetError

if TYPE_CHECKING:
    from ocrnet.bench import BenchReport

Handler = Callable[[argparse.Namespace], int | None]


# --- inspect ---------------------------------------------------------------------------------
def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="describe a checkpoint: variant, parameters, classes")
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
    p.add_argument("--isolate", action="store_true",
                   help="measure each MODEL in a process of its own, one after another (for "
                        "models too big to share memory; not interleaved, same inputs)")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the report as JSON")
    p.add_argument("--markdown", metavar="OUT", help="write the tables as Markdown")
    p.add_argument("--plot", metavar="OUT.png", help="write latency/throughput plots (PNG)")
    p.set_defaults(handler=_run_bench)


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


def _run_bench(args: argparse.Namespace) -> int:
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


# --- train -----------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    # Defaults live in ocrnet.train.TrainConfig alone (not imported here: it pulls in torch);
    # options the user leaves out are simply not passed.
    p = sub.add_parser("train", help="train OCRNet on a Cityscapes-layout dataset (mmseg losses)",
                       argument_default=argparse.SUPPRESS)
    p.add_argument("--data-root", required=True, help="Cityscapes-layout root (train split used)")
    p.add_argument("--out-dir", required=True, help="checkpoints go here (latest.pth, final.pth)")
    p.add_argument("--variant", help="hr18s, hr18 (default) or hr48")
    p.add_argument("--iters", type=int, help="iterations (default 1000)")
    p.add_argument("--batch-size", type=int, help="images per iteration (default 8)")
    p.add_argument("--crop", help="random crop HxW (default 256x256)")
    p.add_argument("--scale", help="base keep-ratio scale WxH before --ratio (default 512x256)")
    p.add_argument("--ratio", nargs=2, type=float, metavar=("MIN", "MAX"),
                   help="random rescale range (default 0.5 2.0)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], help="default adamw")
    p.add_argument("--lr", type=float, help="peak learning rate (default 2e-3)")
    p.add_argument("--weight-decay", type=float, help="default 1e-2")
    p.add_argument("--warmup-iters", type=int, help="linear warm-up iterations (default 50)")
    p.add_argument("--seed", type=int, help="data order and augmentation seed (default 0)")
    p.add_argument("--checkpoint-interval", type=int, help="save latest.pth every N (default 100)")
    p.add_argument("--val-interval", type=int, help="validate every N iterations (default: end)")
    p.add_argument("--val-limit", type=int, help="val images per validation (default 50)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--init", help="start from these weights (fine-tune); the optimizer starts "
                                  "fresh. Ignored when resuming from latest.pth")
    p.add_argument("--amp", choices=["fp32", "bf16"],
                   help="forward precision: fp32 (default) or bf16 autocast (~2x faster on "
                        "CPUs with AVX-512 BF16; the loss stays fp32)")
    p.add_argument("--no-resume", action="store_true", help="start over even if latest.pth exists")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import json

    from ocrnet.data.transforms import parse_scale
    from ocrnet.model import model_from_checkpoint
    from ocrnet.train import TrainConfig, train, validate

    opts = dict(vars(args))
    for name in ("handler", "verb", "no_resume", "no_progress"):
        opts.pop(name, None)
    if "crop" in opts:
        opts["crop"] = parse_scale(opts["crop"])  # (H, W) as written
    if "scale" in opts:
        opts["scale"] = parse_scale(opts["scale"])
    if "ratio" in opts:
        opts["ratio_range"] = tuple(opts.pop("ratio"))
    cfg = TrainConfig(**opts)
    final = train(cfg, resume=not getattr(args, "no_resume", False),
                  progress=not getattr(args, "no_progress", False))
    result = validate(model_from_checkpoint(final), cfg.data_root, scale=cfg.scale)
    print(json.dumps({"checkpoint": str(final), "val_mIoU": result["mIoU"]}))
    scale = "x".join(map(str, cfg.scale))
    print(f"next: ocrnet eval --checkpoint {final} --data-root {cfg.data_root} --scale {scale}")
    return 0


# --- run -------------------------------------------------------------------------------------
def _add_run(sub: argparse._SubParsersAction) -> None:
    from ocrnet.pipeline import DEFAULT_PRECISIONS, RunConfig

    d = RunConfig()
    p = sub.add_parser(
        "run", help="one click: export -> build each precision -> eval -> bench -> report",
        description="With no arguments: the offline demo (shipped demo model, generated scenes). "
                    "With --checkpoint and --data-root: the real model on Cityscapes val.")
    p.add_argument("--checkpoint", help="mmseg checkpoint (default: the shipped demo model)")
    p.add_argument("--data-root", help="Cityscapes root (default: generated demo scenes)")
    p.add_argument("--out", default=None, help="run folder (default runs/demo or runs/<ckpt>)")
    p.add_argument("--backend", default=d.backend, help="engine backend (default openvino)")
    p.add_argument("--precisions", nargs="+",
                   help="precisions to build and compare (aliases accepted; default: those of "
                        f"{', '.join(DEFAULT_PRECISIONS)} this machine runs natively)")
    p.add_argument("--limit", type=int, help="evaluate only the first N val images")
    p.add_argument("--scale", help="keep-ratio resize limit WxH (default: 512x256 demo, "
                                   "2048x1024 Cityscapes)")
    p.add_argument("--calib-count", type=int, default=d.calib_count,
                   help="int8 calibration images from the train split")
    p.add_argument("--calib-method", help="int8 calibration method (backend-specific)")
    p.add_argument("--bench-duration", type=float, default=d.bench_duration,
                   help="seconds of timed inference per model")
    p.add_argument("--bench-batches", type=int, nargs="+", default=list(d.bench_batches))
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(handler=_run_run)


def _run_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ocrnet.data.transforms import parse_scale
    from ocrnet.pipeline import RunConfig, run

    out = args.out or ("runs/demo" if args.checkpoint is None
                       else f"runs/{Path(args.checkpoint).stem}")
    cfg = RunConfig(
        checkpoint=args.checkpoint, data_root=args.data_root, out=out, backend=args.backend,
        precisions=args.precisions, limit=args.limit,
        scale=parse_scale(args.scale) if args.scale else None, calib_count=args.calib_count,
        calib_method=args.calib_method, bench_duration=args.bench_duration,
        bench_batches=args.bench_batches, progress=args.progress)
    run(cfg)
    return 0


# --- predict ---------------------------------------------------------------------------------
def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="images, folders or globs -> label PNGs, colours, overlays")
    p.add_argument("model", metavar="MODEL", help="engine package, .onnx or .pth checkpoint")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=("trainids", "cityscapes"), default="trainids",
                   help="trainIds PNGs, or official labelIds (*_pred_labelIds.png) for the "
                        "Cityscapes benchmark")
    p.add_argument("--color", action="store_true", help="also write palette PNGs (_color.png)")
    p.add_argument("--overlay", action="store_true", help="also write overlays (_overlay.png)")
    p.add_argument("--opacity", type=float, default=0.5, help="overlay opacity (default 0.5)")
    p.add_argument("--scale", help="keep-ratio resize limit WxH (default 2048x1024, as eval)")
    p.add_argument("--resize", choices=("logits", "labels"), default="logits",
                   help="back to the original size via bilinear logits (exact) or nearest labels")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, help="decode threads")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the file list as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(handler=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ocrnet.predict import predict

    written = predict(args.model, args.inputs, args.out, format=args.format, color=args.color,
                      overlay=args.overlay, opacity=args.opacity, scale=args.scale,
                      batch_size=args.batch_size, device=args.device, resize=args.resize,
                      workers=args.workers, progress=args.progress)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(written, indent=1, default=str) + "\n")
    print(f"predicted {len(written)} image(s) into {args.out}")
    if args.format == "cityscapes":
        print(f"next: ocrnet eval --predictions {args.out} --data-root CITYSCAPES_ROOT")
    else:
        flag = "--checkpoint" if Path(args.model).suffix in (".pth", ".pt") else "--model"
        print(f"next: ocrnet eval {flag} {args.model} --data-root CITYSCAPES_ROOT")
    return 0


# --- export ----------------------------------------------------------------------------------
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="checkpoint -> ONNX (static or dynamic; labels/logits)")
    p.add_argument("checkpoint", help="a .pth checkpoint")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--shape", default="1x3x1024x2048",
                   help="NxCxHxW of the input (default: %(default)s)")
    p.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width")
    p.add_argument("--outputs", nargs="+", default=["labels", "logits"],
                   choices=["labels", "logits"], help="graph outputs, in order (default: both)")
    p.add_argument("--uint8-input", action="store_true",
                   help="take raw RGB uint8 NHWC and normalize inside the graph")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset >= 17 (default: %(default)s)")
    p.add_argument("--verify", action="store_true", help="compare ONNX Runtime with PyTorch")
    p.add_argument("--winograd", action="store_true",
                   help="write the widest 3x3 convolutions as Winograd F(4x4,3x3) (static shapes; "
                        "11%% less time per image in OpenVINO fp32 at 1024x2048; same function "
                        "up to rounding)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling (runs code from the file: only for files you trust)")
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ocrnet.export import export_onnx

    result = export_onnx(args.checkpoint, args.out, shape=args.shape, dynamic=args.dynamic,
                         outputs=args.outputs, uint8_input=args.uint8_input, opset=args.opset,
                         verify=args.verify, trust_checkpoint=args.trust_checkpoint,
                         winograd=args.winograd)
    shape = "x".join(str(d) for d in result.input_shape)
    print(f"wrote {result.path} (input {shape}, outputs {', '.join(result.outputs)}, "
          f"{result.seconds:.1f} s)")
    if result.verify:
        for check in result.verify["checks"]:
            print(f"  verify {'x'.join(map(str, check['shape']))}: labels agree "
                  f"{100 * check['label_agreement']:.4f}%, logits max|d| "
                  f"{check.get('logits_max_abs_diff', float('nan')):.2e}")
    if not args.uint8_input:
        print(f"next: ocrnet build {result.path} --backend openvino --precision fp32 "
              f"--out {Path(result.path).with_suffix('')}-openvino-fp32")
    return 0


# --- build -----------------------------------------------------------------------------------
def _add_build(sub: argparse._SubParsersAction) -> None:
    from ocrnet.quantize import SENSITIVE_PARTS

    p = sub.add_parser("build", help="checkpoint or ONNX -> engine package (backend x precision)")
    p.add_argument("source", help="a .pth checkpoint or an .onnx file from `ocrnet export`")
    p.add_argument("--backend", default="openvino", help="openvino | onnxruntime | torch")
    p.add_argument("--precision", default="fp32",
                   help="fp32 | fp16 | bf16 | int8 (aliases: force_float32, force_float16, ...)")
    p.add_argument("--out", required=True, help="the package directory to create")
    p.add_argument("--shape", default="1x3x1024x2048", help="NxCxHxW (checkpoint sources)")
    p.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width")
    p.add_argument("--device", default="cpu", help="device the package is built for")
    p.add_argument("--calib-dir", help="int8: Cityscapes-layout root (its train split is used)")
    p.add_argument("--calib-split", default="train", help="int8: split to calibrate on")
    p.add_argument("--calib-count", type=int, default=32, help="int8: images (default: 32)")
    p.add_argument("--calib-method", help="int8: openvino mixed|performance; "
                   "onnxruntime minmax|entropy|percentile")
    p.add_argument("--bias-correction", default="fast", help="int8 openvino: fast | full")
    p.add_argument("--keep-float", nargs="+", metavar="PART",
                   help=f"int8: parts left unquantized: {', '.join(SENSITIVE_PARTS)} or none")
    p.add_argument("--outputs", nargs="+", default=["labels", "logits"],
                   help="graph outputs, checkpoint sources (default: labels logits); labels "
                        "alone is faster but then eval must run at the images' own size")
    p.add_argument("--winograd", action=argparse.BooleanOptionalAction, default=None,
                   help="Winograd F(4x4,3x3) for the widest 3x3 convolutions (checkpoint sources; "
                        "default: on for fp32/bf16 with static shapes, off for int8)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling (runs code from the file: only for files you trust)")
    p.set_defaults(handler=_run_build)


def _run_build(args: argparse.Namespace) -> int:
    from ocrnet.build import build_package

    package = build_package(
        args.source, args.out, backend=args.backend, precision=args.precision, shape=args.shape,
        dynamic=args.dynamic, device=args.device, calib_dir=args.calib_dir,
        calib_split=args.calib_split, calib_count=args.calib_count, calib_method=args.calib_method,
        bias_correction=args.bias_correction, keep_float=args.keep_float,
        overwrite=args.overwrite, trust_checkpoint=args.trust_checkpoint, winograd=args.winograd,
        outputs=args.outputs)
    runtime = ", ".join(f"{k}={v}" for k, v in package.meta.get("runtime", {}).items())
    print(f"wrote {package.path} ({package.backend} {package.precision.value}; {runtime})")
    print(f"next: ocrnet bench {package.path}   or   ocrnet eval {package.path} --data-root DIR")
    return 0


# --- compare ---------------------------------------------------------------------------------
def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="fidelity of engines vs the PyTorch fp32 reference")
    p.add_argument("models", nargs="+", metavar="MODEL", help="packages, .onnx or .pth files")
    p.add_argument("--images", required=True, help="an image file or folder (recursive)")
    p.add_argument("--reference", help="the fp32 checkpoint (default: a .pth among MODEL or the "
                   "packages' recorded source)")
    p.add_argument("--count", type=int, help="use at most this many images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", dest="json_out", help="also write the report as JSON here")
    p.set_defaults(handler=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from ocrnet.compare import compare_models, format_table

    report = compare_models(args.models, args.images, reference=args.reference,
                            device=args.device, count=args.count, json_out=args.json_out)
    print(format_table(report))
    return 0


# Verbs are registered here in the order `ocrnet --help` lists them.
_VERBS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_run,
    _add_inspect,
    _add_train,
    _add_eval,
    _add_synth,
    _add_bench,
    _add_predict,
    _add_export,
    _add_build,
    _add_compare,
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
