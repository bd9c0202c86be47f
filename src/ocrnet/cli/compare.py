"""`ocrnet compare MODEL... --images DIR`: fidelity against the PyTorch fp32 reference."""

from __future__ import annotations

import argparse

from ocrnet.cli.options import add_device, add_model, add_output, add_trust, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="fidelity of engines vs the PyTorch fp32 reference")
    add_model(p, nargs="+", what="packages, .onnx or .pth files")
    p.add_argument("--images", required=True, help="an image file or folder (recursive)")
    p.add_argument("--reference", help="the fp32 checkpoint (default: a .pth among MODEL or the "
                   "packages' recorded source)")
    p.add_argument("--count", type=positive_int, help="use at most this many images")
    add_device(p)
    add_trust(p)
    add_output(p, json_help="also write the report as JSON here", progress=False)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ocrnet.compare import compare_models, format_table

    report = compare_models(args.models, args.images, reference=args.reference,
                            device=args.device, count=args.count, json_out=args.json_out,
                            trust_checkpoint=args.trust_checkpoint,
                            trust_package=args.trust_package)
    print(format_table(report))
    return 0
