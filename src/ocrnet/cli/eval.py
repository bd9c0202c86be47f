"""`ocrnet eval [MODEL] --data-root DIR`: mIoU, per-class IoU, aAcc, mAcc on a Cityscapes split."""

from __future__ import annotations

import argparse
from typing import Any

from ocrnet import defaults
from ocrnet.cli.options import (
    RAY_WORKERS_HELP,
    add_batch_size,
    add_device,
    add_max_pixels,
    add_mode,
    add_output,
    add_ray,
    add_resize,
    add_scale,
    add_streams,
    add_trust,
    add_workers,
    check_outputs,
    mode_options,
    positive_int,
    write_json,
)
from ocrnet.errors import OcrnetError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="mIoU / per-class IoU on Cityscapes for a model or predictions")
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="engine package folder, .onnx or .pth checkpoint")
    alias = p.add_mutually_exclusive_group()
    alias.add_argument("--checkpoint", help="same as MODEL (a .pth checkpoint)")
    alias.add_argument("--model", dest="model_option", metavar="PKG",
                       help="same as MODEL (an engine package folder)")
    alias.add_argument("--predictions",
                       help="score saved <city>_<seq>_<frame>*.png labelIds predictions instead")
    p.add_argument("--data-root", required=True,
                   help="Cityscapes root holding leftImg8bit/ and gtFine/")
    p.add_argument("--split", default=defaults.SPLIT,
                   help=f"split to evaluate (default: {defaults.SPLIT})")
    p.add_argument("--limit", type=positive_int, help="only the first N images (sorted by name)")
    add_batch_size(p)
    add_scale(p)
    add_resize(p)
    add_device(p, help="device for MODEL")
    add_workers(p, help=RAY_WORKERS_HELP)
    add_ray(p)
    add_streams(p)
    add_trust(p)
    p.add_argument("--save-predictions", metavar="DIR",
                   help="write <city>_<seq>_<frame>_pred_labelIds.png (official labelIds) here")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable or inconsistent images/labels, list them in the JSON")
    p.add_argument("--reference", metavar="MODEL",
                   help="also evaluate this model (e.g. the fp32 checkpoint) on the same images "
                        "and report ΔmIoU with its 95%% paired bootstrap interval")
    add_max_pixels(p)
    add_mode(p)
    add_output(p, json_help="write the results as JSON here, with the calibration block (mean "
                            "confidence of right and wrong pixels, 10-bin reliability table, "
                            "ECE; null for a model without logits)")
    p.set_defaults(handler=run)


def model_of(args: argparse.Namespace) -> str | None:
    """The one model named by MODEL, --checkpoint or --model (aliases of each other)."""
    named = [m for m in (args.model, args.checkpoint, args.model_option) if m]
    if len(named) > 1:
        raise OcrnetError("name the model once: MODEL, --checkpoint or --model (aliases)")
    return named[0] if named else None


def _against_reference(args: argparse.Namespace, result: Any) -> None:
    """Evaluate --reference with the same options; put ΔmIoU and its interval in the result."""
    from ocrnet.evaluate import evaluate

    if args.predictions:
        raise OcrnetError("--reference needs a MODEL: saved predictions keep no per-image "
                          "matrices to pair with")
    # The model's own scale (a static package's input size) unless one was given: both runs
    # must see the same pixels for the pairing to mean anything.
    scale = args.scale or result.extra.get("scale")
    ref = evaluate(args.reference, args.data_root, args.split, args.limit, args.batch_size,
                   scale=tuple(scale) if isinstance(scale, list) else scale,
                   device=args.device, skip_bad=args.skip_bad, max_pixels=args.max_pixels,
                   resize=args.resize, workers=args.workers, progress=args.progress,
                   trust_checkpoint=args.trust_checkpoint, trust_package=args.trust_package,
                   **mode_options(args))  # its own streams: another model, another backend
    ci = result.delta_vs(ref)
    result.extra["reference"] = {"model": args.reference, "mIoU": ref.to_json()["mIoU"],
                                 **ci.to_json()}
    print(f"ΔmIoU vs {args.reference}: {ci}")


def run(args: argparse.Namespace) -> int:
    from ocrnet.evaluate import evaluate, evaluate_predictions

    model = model_of(args)
    check_outputs(args.json_out)
    if args.predictions:
        if model:
            raise OcrnetError("--predictions scores saved files: name no MODEL with it")
        if args.mode != "whole":
            raise OcrnetError("--mode runs a model; --predictions scores saved files")
        if args.save_predictions:
            raise OcrnetError("--save-predictions needs a model (MODEL); with --predictions the "
                              "predictions are already saved")
        result = evaluate_predictions(args.predictions, args.data_root, args.split, args.limit,
                                      skip_bad=args.skip_bad, workers=args.workers,
                                      progress=args.progress, ray=args.ray)
    elif model is None:
        raise OcrnetError("name a MODEL (package folder, .onnx or .pth) or --predictions DIR")
    else:
        result = evaluate(
            model, args.data_root, args.split, args.limit, args.batch_size, scale=args.scale,
            device=args.device, save_predictions=args.save_predictions,
            skip_bad=args.skip_bad, resize=args.resize, workers=args.workers,
            max_pixels=args.max_pixels,
            progress=args.progress, trust_checkpoint=args.trust_checkpoint,
            trust_package=args.trust_package, threads=args.threads, ray=args.ray,
            calibration=bool(args.json_out), streams=args.streams, **mode_options(args),
        )
    if getattr(args, "reference", None):
        _against_reference(args, result)
    print(result.table())
    print(f"\n{result.num_images} images ({args.split}) from {args.data_root}")
    scale = result.extra.get("scale")
    if result.extra.get("scale_source") == "package input":
        print(f"scale {'x'.join(map(str, scale))}: the package's own input size (--scale to set)")
    if "ray" in result.extra:
        from ocrnet.jobs.cluster import summary_line

        print(summary_line(result.extra["ray"]))
    calibration = result.extra.get("calibration")
    if calibration and calibration["pixels"]:
        from ocrnet.calibration import Calibration

        print(Calibration.from_dict(calibration).table().splitlines()[-1])
    if result.skipped:
        print(f"skipped {len(result.skipped)} sample(s):")
        for skipped in result.skipped:
            print(f"  {skipped.path}: {skipped.reason}")
    if args.json_out:
        write_json(args.json_out, result.to_json())
    return 0
