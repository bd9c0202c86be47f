"""`ocrnet VERB ...`: one entry point, a thin layer over the Python API.

Each verb is a module here with `register(subparsers)`, which declares its options (named as in
the Python API, shared groups from `options`) and a handler that calls the API. Handlers import
the API lazily, so `ocrnet --help` loads neither OpenCV nor torch nor an engine. User errors
(`OcrnetError`) and filesystem errors print one line and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ocrnet import __version__
from ocrnet.cli.options import Parser
from ocrnet.errors import OcrnetError

#: The verbs, in the order `ocrnet --help` lists them; each is `ocrnet.cli.<module>`.
VERBS = ("run", "inspect", "train", "eval", "synth", "bench", "predict", "export", "build",
         "compare", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ocrnet",
        description="OCRNet (mmseg-exact): export, build engines, evaluate, benchmark, predict.",
    )
    parser.add_argument("--version", action="version", version=f"ocrnet {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        importlib.import_module(f"{__name__}.{verb}").register(sub)
    return parser


def _describe_os_error(err: OSError) -> str:
    """'<file>: <what went wrong>' with the advice a user can act on."""
    name = err.filename or ""
    reason = err.strerror or str(err)
    advice = {28: "free some space or write elsewhere", 13: "check the permissions",
              20: "a part of the path is a regular file, not a folder",
              36: "use a shorter name", 30: "the filesystem is read-only"}.get(err.errno or 0, "")
    where = f"{name}: " if name else ""
    return f"{where}{reason}" + (f" ({advice})" if advice else "")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verb = next((a for a in argv if a in VERBS), "")
    try:
        args = build_parser().parse_args(argv)
    except OcrnetError as err:  # a bad option value (Parser)
        print(f"ocrnet {verb}: error: {err}".replace("ocrnet :", "ocrnet:"), file=sys.stderr)
        return 1
    try:
        return int(args.handler(args) or 0)
    except OcrnetError as err:
        print(f"ocrnet {args.verb}: error: {err}", file=sys.stderr)
    except OSError as err:  # disk full, permission, a path under a regular file, ...
        print(f"ocrnet {args.verb}: error: {_describe_os_error(err)}", file=sys.stderr)
    except MemoryError:
        print(f"ocrnet {args.verb}: error: out of memory; use smaller inputs or batches",
              file=sys.stderr)
    except KeyboardInterrupt:
        print(f"ocrnet {args.verb}: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
