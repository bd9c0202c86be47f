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
    add_mode,
    add_model,
    add_output,
    add_overwrite,
    add_ray,
    add_resize,
    add_scale,
    add_streams,
    add_trust,
    add_workers,
    check_outputs,
    fraction,
    mode_options,
    non_negative_float,
    positive_float,
    positive_int,
    write_json,
)
from ocrnet.errors import OcrnetError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="images, folders or globs -> label PNGs, colours, overlays")
    add_model(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders or globs, or one video (any container OpenCV's "
                        "FFmpeg reads: .mp4, .avi, .mkv, ...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=("trainids", "cityscapes"),
                   default=defaults.PREDICT_FORMAT,
                   help="trainIds PNGs, or official labelIds (*_pred_labelIds.png) for the "
                        f"Cityscapes benchmark (default: {defaults.PREDICT_FORMAT})")
    p.add_argument("--color", action="store_true", help="also write palette PNGs (_color.png)")
    p.add_argument("--overlay", action="store_true", help="also write overlays (_overlay.png)")
    p.add_argument("--opacity", type=fraction, default=defaults.OPACITY,
                   help=f"overlay opacity (default: {defaults.OPACITY})")
    p.add_argument("--confidence", action="store_true",
                   help="also write the max softmax probability as an 8-bit PNG "
                        "(_confidence.png, round(p * 255))")
    add_mode(p)
    add_video(p)
    add_scale(p)
    add_resize(p)
    add_batch_size(p)
    add_device(p)
    add_workers(p, help=RAY_WORKERS_HELP)
    add_ray(p)
    add_streams(p)
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


def add_video(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video input (ocrnet.predict_video)")
    g.add_argument("--every", type=positive_int, metavar="N",
                   help="predict every N-th frame (default: 1, all)")
    g.add_argument("--start", type=non_negative_float, metavar="S",
                   help="first second of the clip to predict (default: 0)")
    g.add_argument("--duration", type=positive_float, metavar="S",
                   help="seconds to predict from --start (default: to the end)")
    g.add_argument("--frames", action="store_true",
                   help="also write each predicted frame's label PNG, named by frame index")


def run(args: argparse.Namespace) -> int:
    from ocrnet.data.cityscapes import CLASSES

    check_outputs(args.json_out)
    from ocrnet.data.video import is_video_file

    if len(args.inputs) == 1 and is_video_file(args.inputs[0]):
        return run_video(args)
    video_only = [o for o in ("every", "start", "duration", "frames")
                  if getattr(args, o) not in (None, False)]
    if video_only:
        raise OcrnetError(f"--{video_only[0]} applies to a video input, and "
                          f"{args.inputs[0]!r} is not one (.mp4, .avi, .mkv, ...)")
    options = dict(format=args.format, color=args.color, overlay=args.overlay,
                   opacity=args.opacity, scale=args.scale, batch_size=args.batch_size,
                   device=args.device, resize=args.resize, workers=args.workers,
                   threads=args.threads, skip_bad=args.skip_bad, progress=args.progress,
                   max_pixels=args.max_pixels, confidence=args.confidence,
                   trust_checkpoint=args.trust_checkpoint, trust_package=args.trust_package,
                   streams=args.streams, **mode_options(args))
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


def run_video(args: argparse.Namespace) -> int:
    """`predict MODEL clip.mp4 --out DIR`: frames, overlay clip and per-frame JSON."""
    from ocrnet.predict_video import predict_video

    if args.ray or args.skip_bad or args.color or args.streams:
        flag = "--ray" if args.ray else "--skip-bad" if args.skip_bad else \
            "--color" if args.color else "--streams"
        raise OcrnetError(f"{flag} applies to image inputs, not to a video")
    record = predict_video(
        args.model, args.inputs[0], args.out, every=args.every or 1, start=args.start or 0.0,
        duration=args.duration, overlay=args.overlay, frames=args.frames,
        confidence=args.confidence, format=args.format, opacity=args.opacity,
        scale=args.scale, batch_size=args.batch_size, device=args.device, resize=args.resize,
        progress=args.progress, threads=args.threads, trust_checkpoint=args.trust_checkpoint,
        trust_package=args.trust_package, **mode_options(args))
    if args.json_out:
        write_json(args.json_out, record)
    summary = record["summary"]
    rate = f" ({summary['frames_per_second']:.2f} frames/s)" if summary["seconds"] else ""
    print(f"predicted {summary['frames']} frame(s) of {args.inputs[0]} into {args.out}{rate}")
    print(f"per-frame classes and timings: {record['json']}")
    if "overlay" in record:
        print(f"overlay: {record['overlay']}")
    return 0
