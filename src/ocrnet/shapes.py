"""One grammar for sizes on the command line and in the API.

Three kinds of size travel through ocrnet, each always written the same way:

- `Size`, an image or crop size, **HEIGHTxWIDTH** (`256x512`): `synth --size`, `train --crop`;
- `Scale`, mmseg's keep-ratio resize limit, **WIDTHxHEIGHT** (`2048x1024`) as mmseg writes
  `Resize(scale=(2048, 1024))`: `--scale` everywhere;
- `InputShape`, a network input, **NxCxHxW** (`1x3x1024x2048`), with **HxW** as shorthand for
  `1x3xHxW`: `--shape` everywhere (`build`, `export`, `bench`): one option name, one meaning.

Each has a parser raising `ShapeError` (one line saying what was expected), usable directly as an
argparse `type=` (the CLI's parser turns the error into one line, exit 1). This module imports
nothing heavy: the CLI uses it to build `--help`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from ocrnet.errors import DataError


class ShapeError(DataError):
    """A size, scale or input shape that does not parse.

    `detail` is the message without its subject (`'axb' is not HEIGHTxWIDTH ...`), so the CLI
    can name the option instead.
    """

    def __init__(self, subject: str, detail: str) -> None:
        super().__init__(f"{subject} {detail}")
        self.detail = detail


class Size(NamedTuple):
    """An image size, height first (`HEIGHTxWIDTH`)."""

    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.height}x{self.width}"


class Scale(NamedTuple):
    """mmseg's keep-ratio resize limit (`WIDTHxHEIGHT`): long and short edge, any order."""

    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class InputShape(NamedTuple):
    """A network input shape (`NxCxHxW`)."""

    batch: int
    channels: int
    height: int
    width: int

    @property
    def size(self) -> Size:
        return Size(self.height, self.width)

    def __str__(self) -> str:
        return "x".join(map(str, self))


_SEPARATOR = re.compile(r"\s*[xX,*]\s*")


def _ints(text: str | Sequence[int], count: int) -> tuple[int, ...] | None:
    """`count` integers from 'AxB...' text or a sequence; None if it is not that."""
    if isinstance(text, str):
        parts = _SEPARATOR.split(text.strip())
        if len(parts) != count or not all(p.isdigit() for p in parts):
            return None
        return tuple(int(p) for p in parts)
    try:
        values = tuple(int(v) for v in text)
    except (TypeError, ValueError):
        return None
    return values if len(values) == count else None


def parse_size(text: str | Sequence[int], *, minimum: int = 1, what: str = "size") -> Size:
    """'256x512' or (256, 512) -> Size(height=256, width=512); each side >= `minimum`."""
    dims = _ints(text, 2)
    if dims is None or min(dims) < minimum:
        floor = "positive integers" if minimum <= 1 else f"integers >= {minimum}"
        raise ShapeError(what, f"{text!r} is not HEIGHTxWIDTH with {floor}, e.g. 256x512 "
                               "or 1024x2048")
    return Size(*dims)


def parse_scale(text: str | Sequence[int]) -> Scale:
    """'2048x1024' -> Scale(width=2048, height=1024): the keep-ratio resize limit."""
    dims = _ints(text, 2)
    if dims is None or min(dims) < 1:
        raise ShapeError("scale", f"{text!r} is not WIDTHxHEIGHT with positive integers, "
                                  "e.g. 2048x1024 or 1024x512")
    return Scale(*dims)


def parse_input_shape(text: str | Sequence[int]) -> InputShape:
    """'1x3x1024x2048' -> InputShape(1, 3, 1024, 2048); C must be 3 (RGB).

    'HxW' (or (H, W)) is shorthand for 1x3xHxW: `--shape 1024x2048` means one RGB image.
    """
    dims = _ints(text, 4)
    if dims is None:
        hw = _ints(text, 2)
        dims = None if hw is None else (1, 3, *hw)
    if dims is None or dims[1] != 3 or min(dims) < 1:
        raise ShapeError("shape", f"{text!r} is not NxCxHxW with C=3 and positive sizes, nor "
                                  "HEIGHTxWIDTH (short for 1x3xHxW), e.g. 1x3x1024x2048 or "
                                  "1024x2048")
    return InputShape(*dims)


#: argparse `type=` callables (the parsers themselves, under the names the CLI uses).
size_arg = parse_size
scale_arg = parse_scale
input_shape_arg = parse_input_shape
