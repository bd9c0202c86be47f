"""`ocrnet synth --out DIR`: generated street scenes in the exact Cityscapes layout."""

from __future__ import annotations

import argparse

from ocrnet import defaults
from ocrnet.cli.options import non_negative_int, positive_int
from ocrnet.shapes import Size, size_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write synthetic street scenes in the Cityscapes layout")
    p.add_argument("--out", required=True, help="dataset root to write (leftImg8bit/, gtFine/)")
    p.add_argument("--train", type=non_negative_int, default=defaults.SYNTH_TRAIN,
                   help=f"training images (default: {defaults.SYNTH_TRAIN})")
    p.add_argument("--val", type=non_negative_int, default=defaults.SYNTH_VAL,
                   help=f"validation images (default: {defaults.SYNTH_VAL})")
    p.add_argument("--size", type=size_arg, default=Size(*defaults.SYNTH_SIZE), metavar="HxW",
                   help=f"image size HEIGHTxWIDTH (default: {Size(*defaults.SYNTH_SIZE)})")
    p.add_argument("--seed", type=int, default=defaults.SYNTH_SEED,
                   help=f"base seed (default: {defaults.SYNTH_SEED})")
    p.add_argument("--workers", type=positive_int, help="processes (default: all CPU cores)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ocrnet.data.synthetic import parse_size, write_dataset

    size = parse_size(str(args.size))  # the generator's own floor (32 px) applies
    result = write_dataset(args.out, train=args.train, val=args.val, size=size,
                           seed=args.seed, workers=args.workers, progress=args.progress)
    counts = ", ".join(f"{n} {split}" for split, n in result["counts"].items())
    print(f"wrote {counts} images ({args.size}) to {result['root']}")
    print(f"manifest: {result['manifest']}")
    print(f"next: ocrnet eval MODEL --data-root {result['root']} --split val")
    return 0
