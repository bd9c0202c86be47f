"""`ocrnet predict MODEL INPUT... --out DIR`: label PNGs, colour masks and overlays."""

from __future__ import annotations

import argparse
from pathlib import Path

from ocrnet import defaults
from ocrnet.cli.options import (
    RAY_WORKERS_HELP,
    add_batch_size,
    add_device,
    add_max_pixels,
    add_model,
    add_output,
    add_overwrite,
    add_ray,
    add_resize,
    add_scale,
    add_trust,
    add_workers,
    check_outputs,
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
    add_workers(p, help=RAY_WORKERS_HELP)
    add_ray(p)
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable images, listed in the output and the JSON, instead of "
                        "stopping at the first")
    add_trust(p)
    add_max_pixels(p)
    add_overwrite(p, what="this run's outputs in --out when its run record (ocrnet-run.json) "
                          "names another model or options, or files no record owns (nothing "
                          "else in the folder is touched)")
    add_output(p, json_help="write the written files as JSON here (with --ray: an object with "
                            "images, resumed, skipped and the Ray run)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ocrnet.data.cityscapes import CLASSES

    check_outputs(args.json_out)
    options = dict(format=args.format, color=args.color, overlay=args.overlay,
                   opacity=args.opacity, scale=args.scale, batch_size=args.batch_size,
                   device=args.device, resize=args.resize, workers=args.workers,
                   threads=args.threads, skip_bad=args.skip_bad, progress=args.progress,
                   max_pixels=args.max_pixels,
                   trust_checkpoint=args.trust_checkpoint, trust_package=args.trust_package)
    from ocrnet.predict import predict_run

    result = predict_run(args.model, args.inputs, args.out, ray=args.ray,
                         overwrite=args.overwrite, **options)
    images = result.images
    payload = result.to_json() if args.ray else images
    if args.json_out:
        write_json(args.json_out, payload)
    skipped = [r for r in images if "skipped" in r]
    print(f"predicted {len(images) - len(skipped)} image(s) into {args.out}")
    if result.resumed:
        print(f"resumed {result.resumed} image(s) already in {args.out} (this run's outputs "
              "exist; not predicted again)")
    if args.ray and "workers_used" in result.ray:
        from ocrnet.jobs.cluster import summary_line

        print(summary_line(result.ray))
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s):")
        for r in skipped:
            print(f"  {r['image']}: {r['skipped']}")
    if result.num_classes not in (None, len(CLASSES)):
        # Eval scores Cityscapes' 19 classes and would refuse this model: no hint that fails.
        print(f"note: {args.model} predicts {result.num_classes} classes, not the "
              f"{len(CLASSES)} Cityscapes classes; `ocrnet eval` does not apply to it")
    elif args.format == "cityscapes":
        print(f"next: ocrnet eval --predictions {args.out} --data-root CITYSCAPES_ROOT")
    else:
        print(f"next: ocrnet eval {Path(args.model)} --data-root CITYSCAPES_ROOT")
    return 0
