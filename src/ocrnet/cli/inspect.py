"""`ocrnet inspect CKPT`: variant, parameter count, classes and config of a checkpoint."""

from __future__ import annotations

import argparse

from ocrnet.cli.options import add_trust, check_outputs, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="describe a checkpoint: variant, parameters, classes")
    p.add_argument("checkpoint", help="a .pth checkpoint (mmseg layout or bare state dict)")
    add_trust(p, package=False)
    p.add_argument("--json", dest="json_out", metavar="OUT",
                   help="also write the description as JSON here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ocrnet.model.checkpoint import describe_checkpoint

    check_outputs(args.json_out)
    info = describe_checkpoint(args.checkpoint, trust_checkpoint=args.trust_checkpoint)
    config = info.pop("config", None)
    for key, value in info.items():
        print(f"{key:>14}: {value}")
    if config:
        print("\nconfig found in meta:\n" + config)
    if args.json_out:
        write_json(args.json_out, {**info, "config": config})
    return 0
