"""Option groups shared by the verbs, declared once, and argparse `type=` callables.

Every default shown here is read from `ocrnet.defaults`, the module the Python API takes its
defaults from. Nothing heavy is imported: building the parser must not load OpenCV or torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from ocrnet import defaults
from ocrnet.errors import ArgumentError, OcrnetError
from ocrnet.shapes import InputShape, ShapeError, input_shape_arg, scale_arg, size_arg

TRUST_HELP = "allow full unpickling (runs code from the file: only for files you trust)"


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option VALUE is a user error like any other: one line, exit 1.

    The `type=` callables below and `ocrnet.shapes` raise `OcrnetError`; argparse lets those
    through its own handling, and this names the option they belong to. Structural mistakes
    (a missing or unknown option) stay argparse's usage errors (exit 2).
    """

    def _get_value(self, action: argparse.Action, arg_string: str) -> object:
        try:
            return super()._get_value(action, arg_string)
        except ShapeError as err:
            raise ArgumentError(f"{action.dest.replace('_', ' ')} {err.detail}") from None
        except OcrnetError as err:
            raise ArgumentError(f"{action.dest.replace('_', ' ')} {err}") from None


def _number(kind: type, minimum: float, *, strict: bool, what: str) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise ArgumentError(f"{text!r} is not {what}") from None
        if value < minimum or (strict and value == minimum):
            raise ArgumentError(f"{text!r} is not {what}")
        return value

    convert.__name__ = what
    return convert


#: argparse types that refuse nonsense up front (`--workers -1`, `--iterations 0`, ...).
positive_int = _number(int, 0, strict=True, what="a positive integer")
non_negative_int = _number(int, 0, strict=False, what="a non-negative integer")
positive_float = _number(float, 0.0, strict=True, what="a positive number")
non_negative_float = _number(float, 0.0, strict=False, what="a non-negative number")


def fraction(text: str) -> float:
    """A number within 0..1 (opacity)."""
    value = non_negative_float(text)
    if value > 1:
        raise ArgumentError(f"{text!r} is not a number within 0..1")
    return value


def add_model(p: argparse.ArgumentParser, *, nargs: str | None = None,
              what: str = "engine package folder, .onnx or .pth checkpoint") -> None:
    """The positional MODEL every verb names its model with."""
    p.add_argument("models" if nargs else "model", nargs=nargs, metavar="MODEL", help=what)


def add_trust(p: argparse.ArgumentParser, *, package: bool = True) -> None:
    """--trust-checkpoint (pickles) and --trust-package (native code in AOTInductor packages)."""
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    if package:
        p.add_argument("--trust-package", action="store_true",
                       help="allow opening packages that hold native code (AOTInductor .pt2: "
                            "loading runs it; only for packages you built or trust)")


def add_output(p: argparse.ArgumentParser, *, json_help: str = "write the results as JSON here",
               progress: bool = True) -> None:
    """--json OUT and --no-progress."""
    p.add_argument("--json", dest="json_out", metavar="OUT", help=json_help)
    if progress:
        p.add_argument("--no-progress", dest="progress", action="store_false",
                       help="no progress bar")


def add_device(p: argparse.ArgumentParser, *, help: str = "device to run on") -> None:
    p.add_argument("--device", default=defaults.DEVICE,
                   help=f"{help} (default: {defaults.DEVICE})")


def add_workers(p: argparse.ArgumentParser, help: str = "decode threads") -> None:
    p.add_argument("--workers", type=positive_int, help=f"{help} (default: min(4, CPUs))")


#: --workers with --ray: what it counts there (the option keeps its name across both).
RAY_WORKERS_HELP = "decode threads; with --ray, engine actors (default there: one per node)"


def add_ray(p: argparse.ArgumentParser) -> None:
    """--ray ADDRESS and --threads T: the job on a Ray cluster, engines sized per actor."""
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster (pip install 'ocrnet[ray]'): local (start Ray "
                        "here), auto (the cluster this machine is in) or HOST:PORT; inputs and "
                        "outputs must be at the same path on every node, the model is shipped")
    p.add_argument("--threads", type=positive_int,
                   help="inference threads per engine (with --ray: per actor; default: the "
                        "engine's own choice, with --ray the node's cores)")


def add_streams(p: argparse.ArgumentParser) -> None:
    """--streams K: images in flight through one engine (predict, eval)."""
    p.add_argument("--streams", type=positive_int, metavar="K",
                   help="images in flight through the engine: OpenVINO packages run K requests "
                        "side by side (its throughput mode); the outputs are the same bytes "
                        "(default: 2 for OpenVINO packages on 2+ cores, else 1; not with --ray, "
                        "whose actors run one each)")


def add_scale(p: argparse.ArgumentParser, *, default_text: str | None = None) -> None:
    text = default_text or (f"{'x'.join(map(str, defaults.SCALE))} (mmseg's) for checkpoints "
                            "and dynamic packages, a static package's own input size")
    p.add_argument("--scale", type=scale_arg, metavar="WxH",
                   help=f"keep-ratio resize limit WIDTHxHEIGHT (default: {text})")


def add_shape(p: argparse.ArgumentParser, default: InputShape, note: str = "") -> None:
    """--shape NxCxHxW (HxW short for 1x3xHxW): the one grammar of build, export and bench."""
    p.add_argument("--shape", type=input_shape_arg, default=default, metavar="NxCxHxW",
                   help=f"input shape NxCxHxW, or HxW for 1x3xHxW{note} (default: {default})")


def add_resize(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resize", choices=("logits", "labels"), default=defaults.RESIZE,
                   help="how predictions return to the image size: bilinear logits then argmax "
                        f"(mmseg-exact) or nearest labels (default: {defaults.RESIZE})")


def add_max_pixels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-pixels", type=positive_int, default=defaults.MAX_PIXELS,
                   help="refuse images whose header claims more pixels, before decoding "
                        f"(default: {defaults.MAX_PIXELS:_})")


def add_overwrite(p: argparse.ArgumentParser, *, what: str) -> None:
    """--overwrite: replace `what` (each verb says exactly which files, never more)."""
    p.add_argument("--overwrite", action="store_true", help=f"replace {what}")


def check_outputs(*paths: str | None) -> None:
    """Fail now, not after an hour of work, if an output file's folder cannot be written."""
    from pathlib import Path

    from ocrnet.fileio import prepare_folder

    for path in paths:
        if path:
            prepare_folder(Path(path).parent)


def add_batch_size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=positive_int, default=defaults.BATCH_SIZE,
                   help=f"images per engine call (default: {defaults.BATCH_SIZE})")


def choices_text(values: Sequence[str]) -> str:
    return " | ".join(values)


def write_json(path: str, data: object) -> None:
    """Write `data` as JSON atomically (a failure leaves any earlier file intact)."""
    import json

    from ocrnet.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def add_mode(p: argparse.ArgumentParser) -> None:
    """--mode whole|slide|aug with slide's --crop/--stride and aug's --ratios/--flip."""
    g = p.add_argument_group("test mode (mmseg's; see ocrnet.work.modes)")
    g.add_argument("--mode", choices=defaults.MODES, default=defaults.MODE,
                   help="whole image, sliding window (tiles; runs any image size on a static "
                        "package) or test-time augmentation (multi-scale + flip) "
                        f"(default: {defaults.MODE})")
    crop = "x".join(map(str, defaults.SLIDE_CROP))
    g.add_argument("--crop", type=size_arg, metavar="HxW",
                   help=f"slide's tile HEIGHTxWIDTH (default: a static package's input, else "
                        f"{crop})")
    g.add_argument("--stride", type=size_arg, metavar="HxW",
                   help="slide's step HEIGHTxWIDTH (default: two thirds of the crop)")
    g.add_argument("--ratios", type=positive_float, nargs="+", metavar="R",
                   help="aug's resize ratios of the loaded image (default: "
                        f"{' '.join(map(str, defaults.AUG_RATIOS))}, mmseg's Cityscapes TTA)")
    g.add_argument("--flip", action="store_true", help="aug: also each view flipped")


def mode_options(args: argparse.Namespace) -> dict[str, object]:
    """The `add_mode` options as the Python API's keyword arguments (the same names)."""
    return {"mode": args.mode, "crop": args.crop, "stride": args.stride,
            "ratios": args.ratios, "flip": args.flip}
