"""`ocrnet VERB ...`: one entry point, a thin layer over the Python API.

Each verb has an `_add_<verb>(subparsers)` that declares its options (named as in the Python
API) and a handler that calls the API. User errors (`OcrnetError`) print one line, exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ocrnet import __version__
from ocrnet.errors import OcrnetError

Handler = Callable[[argparse.Namespace], int | None]


# --- inspect ---------------------------------------------------------------------------------
def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="describe a checkpoint: variant, parameters, classes, config")
    p.add_argument("checkpoint", help="a .pth checkpoint (mmseg layout or bare state dict)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling (runs code from the file: only for files you trust)")
    p.add_argument("--json", dest="json_out", help="also write the description as JSON here")
    p.set_defaults(handler=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from ocrnet.model.checkpoint import describe_checkpoint

    info = describe_checkpoint(args.checkpoint, trust_checkpoint=args.trust_checkpoint)
    config = info.pop("config", None)
    for key, value in info.items():
        print(f"{key:>14}: {value}")
    if config:
        print("\nconfig found in meta:\n" + config)
    if args.json_out:
        import json
        from pathlib import Path

        Path(args.json_out).write_text(json.dumps({**info, "config": config}, indent=2) + "\n")
    return 0


# Verbs are registered here in the order `ocrnet --help` lists them.
_VERBS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_inspect,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocrnet",
        description="OCRNet (mmseg-exact): export, build engines, evaluate, benchmark, predict.",
    )
    parser.add_argument("--version", action="version", version=f"ocrnet {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for add in _VERBS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except OcrnetError as err:
        print(f"ocrnet {args.verb}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ocrnet {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
