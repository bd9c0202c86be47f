"""`ocrnet compare MODEL... --images DIR`: fidelity against the PyTorch fp32 reference."""

from __future__ import annotations

import argparse

from ocrnet.cli.options import (
    add_device,
    add_mode,
    add_model,
    add_output,
    add_trust,
    mode_options,
    positive_int,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="fidelity of engines vs the PyTorch fp32 reference")
    add_model(p, nargs="+", what="packages, .onnx or .pth files")
    p.add_argument("--images", required=True, help="an image file or folder (recursive)")
    p.add_argument("--reference", metavar="CHECKPOINT",
                   help="the fp32 .pth checkpoint (or .onnx) to compare against; required "
                        "unless a .pth is among MODEL (a package's recorded source is only "
                        "suggested, never read)")
    p.add_argument("--count", type=positive_int, help="use at most this many images")
    add_device(p)
    add_trust(p)
    add_mode(p)
    p.add_argument("--explain", action="store_true",
                   help="also: label-flip matrix, flips on boundaries vs interiors, a heat-map, "
                        "and the layers adding the most error (ONNX-based packages)")
    p.add_argument("--explain-dir", metavar="DIR",
                   help="--explain: where explain.md and the heat-maps go (default: "
                        "compare-explain)")
    p.add_argument("--top-k", type=positive_int, default=10,
                   help="--explain: worst layers listed (default: 10)")
    add_output(p, json_help="also write the report as JSON here", progress=False)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ocrnet.compare import compare_models, format_table

    report = compare_models(args.models, args.images, reference=args.reference,
                            device=args.device, count=args.count, json_out=args.json_out,
                            trust_checkpoint=args.trust_checkpoint,
                            trust_package=args.trust_package, explain=args.explain,
                            explain_dir=args.explain_dir, top_k=args.top_k,
                            **mode_options(args))
    print(format_table(report))
    if args.explain:
        for row in report["models"]:
            layers = row["explain"]["layers"]
            worst = (layers.get("worst") or [{}])[0]
            flips = row["explain"]["flips"]
            print(f"{row['model']}: flips boundary {100 * flips['flip_rate_boundary']:.3f}% vs "
                  f"interior {100 * flips['flip_rate_interior']:.4f}%; "
                  + (f"worst layer {worst['layer']} (adds {worst['added_rel_err']:.2e} rel. err)"
                     if worst else f"no per-layer divergence: {layers.get('skipped')}"))
        print(f"explain: {report['explain_markdown']}")
    return 0
