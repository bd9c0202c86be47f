"""`ocrnet build SRC --backend B --precision P --out PKG`: an engine package (int8 calibrated)."""

from __future__ import annotations

import argparse

from ocrnet import defaults
from ocrnet.cli.options import add_device, add_shape, add_trust, positive_int
from ocrnet.shapes import InputShape

DEFAULT_SHAPE = InputShape(*defaults.INPUT_SHAPE)


def register(sub: argparse._SubParsersAction) -> None:
    from ocrnet.quantize import SENSITIVE_PARTS

    p = sub.add_parser("build", help="checkpoint or ONNX -> engine package (backend x precision)")
    p.add_argument("source", help="a .pth checkpoint or an .onnx file from `ocrnet export`")
    p.add_argument("--backend", default=defaults.BACKEND,
                   help=f"openvino | onnxruntime | torch (default: {defaults.BACKEND})")
    p.add_argument("--precision", default=defaults.PRECISION,
                   help="fp32 | fp16 | bf16 | int8 | int8-bf16 | int8-fp16 (int8 with a half "
                        "remainder; aliases: force_float32, force_float16, qint8_mixed_float16 "
                        f"= int8-fp16, ...; default: {defaults.PRECISION})")
    p.add_argument("--out", required=True, help="the package directory to create")
    add_shape(p, DEFAULT_SHAPE, "; checkpoint sources")
    p.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width")
    add_device(p, help="device the package is built for")
    p.add_argument("--calib-dir", help="int8: Cityscapes-layout root (its train split is used)")
    p.add_argument("--calib-split", default=defaults.CALIB_SPLIT,
                   help=f"int8: split to calibrate on (default: {defaults.CALIB_SPLIT})")
    p.add_argument("--calib-count", type=positive_int, default=defaults.CALIB_COUNT,
                   help=f"int8: images (default: {defaults.CALIB_COUNT})")
    p.add_argument("--calib-method", help="int8: openvino mixed|performance; "
                   "onnxruntime minmax|entropy|percentile")
    p.add_argument("--bias-correction", default=defaults.BIAS_CORRECTION,
                   help=f"int8 openvino: fast | full (default: {defaults.BIAS_CORRECTION})")
    p.add_argument("--keep-float", nargs="+", metavar="PART",
                   help=f"int8: parts left unquantized: {', '.join(SENSITIVE_PARTS)} or none")
    p.add_argument("--max-drop", type=float, metavar="POINTS",
                   help="int8 (openvino): stay within this many mIoU points of the float model "
                        "on held-out calibration-split images, reverting the costliest "
                        "quantized ops to float (NNCF accuracy control)")
    p.add_argument("--holdout-count", type=positive_int, default=16,
                   help="--max-drop: labelled calibration-split images, not used for "
                        "calibration, that the budget is measured on (default: 16)")
    p.add_argument("--outputs", nargs="+", default=list(defaults.OUTPUTS),
                   choices=list(defaults.OUTPUT_CHOICES),
                   help="graph outputs, checkpoint sources (default: labels logits); labels "
                        "alone is faster but then eval must run at the images' own size; "
                        "lowres alone ends the graph before the final resize and the engine "
                        "labels the 1/4-resolution logits in bands (mmseg-exact, no full-size "
                        "planes; full-size logits when asked)")
    p.add_argument("--winograd", action=argparse.BooleanOptionalAction, default=None,
                   help="Winograd F(4x4,3x3) for the widest 3x3 convolutions (checkpoint sources; "
                        "default: on for fp32/bf16 with static shapes, off for int8)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing package (only a folder that is an ocrnet package)")
    add_trust(p, package=False)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ocrnet.build import build_package

    package = build_package(
        args.source, args.out, backend=args.backend, precision=args.precision,
        shape=tuple(args.shape), dynamic=args.dynamic, device=args.device,
        calib_dir=args.calib_dir, calib_split=args.calib_split, calib_count=args.calib_count,
        calib_method=args.calib_method, bias_correction=args.bias_correction,
        keep_float=args.keep_float, overwrite=args.overwrite,
        trust_checkpoint=args.trust_checkpoint, winograd=args.winograd, outputs=args.outputs,
        max_drop=args.max_drop, holdout_count=args.holdout_count)
    runtime = ", ".join(f"{k}={v}" for k, v in package.meta.get("runtime", {}).items())
    print(f"wrote {package.path} ({package.backend} {package.precision.value}; {runtime})")
    control = (package.meta.get("calibration") or {}).get("accuracy_control")
    if control:
        reverted = control["reverted_ops"]
        print(f"accuracy control: budget {control['max_drop']} mIoU, measured drop "
              f"{control['drop']:+.3f} on {control['holdout_count']} held-out images "
              f"({'met' if control['met'] else 'NOT met'}); reverted to float: "
              f"{len(reverted)} op(s){': ' + ', '.join(reverted[:5]) if reverted else ''}"
              f"{' ...' if len(reverted) > 5 else ''}")
    shape = package.meta.get("input", {}).get("shape") or []
    static = len(shape) == 4 and all(isinstance(d, int) for d in shape)
    bench_shape = f" --shape {'x'.join(map(str, shape))}" if static else ""
    print(f"next: ocrnet bench {package.path}{bench_shape}   or   "
          f"ocrnet eval {package.path} --data-root CITYSCAPES_ROOT")
    return 0
