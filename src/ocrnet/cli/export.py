"""`ocrnet export CKPT --out model.onnx`: checkpoint -> ONNX, verified against PyTorch."""

from __future__ import annotations

import argparse

from ocrnet import defaults
from ocrnet.cli.options import add_shape, add_trust, positive_int
from ocrnet.shapes import InputShape

DEFAULT_SHAPE = InputShape(*defaults.INPUT_SHAPE)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="checkpoint -> ONNX (static or dynamic; labels/logits)")
    p.add_argument("checkpoint", help="a .pth checkpoint")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    add_shape(p, DEFAULT_SHAPE)
    p.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width")
    p.add_argument("--outputs", nargs="+", default=list(defaults.OUTPUTS),
                   choices=list(defaults.OUTPUT_CHOICES),
                   help="graph outputs, in order (default: labels logits); lowres alone ends the "
                        "graph before the final resize")
    p.add_argument("--uint8-input", action="store_true",
                   help="take raw RGB uint8 NHWC and normalize inside the graph")
    p.add_argument("--opset", type=positive_int, default=defaults.OPSET,
                   help=f"ONNX opset >= 17 (default: {defaults.OPSET})")
    p.add_argument("--verify", action="store_true", help="compare ONNX Runtime with PyTorch")
    p.add_argument("--winograd", action="store_true",
                   help="write the widest 3x3 convolutions as Winograd F(4x4,3x3) (static shapes; "
                        "11%% less time per image in OpenVINO fp32 at 1024x2048; same function "
                        "up to rounding)")
    add_trust(p, package=False)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ocrnet.export import export_onnx

    result = export_onnx(args.checkpoint, args.out, shape=tuple(args.shape), dynamic=args.dynamic,
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
