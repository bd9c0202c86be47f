"""`ocrnet predict MODEL INPUT... --out DIR`: label PNGs, colour masks and overlays."""

from __future__ import annotations

import argparse
from pathlib import Path

from ocrnet import defaults
from ocrnet.cli.options import (
    add_batch_size,
    add_device,
    add_model,
    add_output,
    add_resize,
    add_scale,
    add_trust,
    add_workers,
    fraction,
    write_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="images, folders or globs -> label PNGs, colours, overlays")
    add_model(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=("trainids", "cityscapes"),
                   default=defaults.PREDICT_FORMAT,
                   help="trainIds PNGs, or official labelIds (*_pred_labelIds.png) for the "
                        f"Cityscapes benchmark (default: {defaults.PREDICT_FORMAT})")
    p.add_argument("--color", action="store_true", help="also write palette PNGs (_color.png)")
    p.add_argument("--overlay", action="store_true", help="also write overlays (_overlay.png)")
    p.add_argument("--opacity", type=fraction, default=defaults.OPACITY,
                   help=f"overlay opacity (default: {defaults.OPACITY})")
    add_scale(p)
    add_resize(p)
    add_batch_size(p)
    add_device(p)
    add_workers(p)
    add_trust(p)
    add_output(p, json_help="write the list of written files as JSON here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ocrnet.predict import predict

    written = predict(args.model, args.inputs, args.out, format=args.format, color=args.color,
                      overlay=args.overlay, opacity=args.opacity, scale=args.scale,
                      batch_size=args.batch_size, device=args.device, resize=args.resize,
                      workers=args.workers, progress=args.progress,
                      trust_checkpoint=args.trust_checkpoint, trust_package=args.trust_package)
    if args.json_out:
        write_json(args.json_out, written)
    print(f"predicted {len(written)} image(s) into {args.out}")
    if args.format == "cityscapes":
        print(f"next: ocrnet eval --predictions {args.out} --data-root CITYSCAPES_ROOT")
    else:
        print(f"next: ocrnet eval {Path(args.model)} --data-root CITYSCAPES_ROOT")
    return 0
