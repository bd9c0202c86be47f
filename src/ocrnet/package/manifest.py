"""The package manifest (`ocrnet.json`), typed: every field's type and every file name is
checked when it is read, so a tampered manifest is one `PackageError`, never a traceback or a
read outside the package."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrnet.errors import OcrnetError, PackageError
from ocrnet.precision import Precision

FORMAT = "ocrnet-engine"
FORMAT_VERSION = 1
MANIFEST = "ocrnet.json"
PARTIAL = ".partial-"  # in the name of a package being written

#: Tensor names of every exported graph and package: `input` (NCHW float32, normalized) ->
#: `labels` (N, H, W uint8 argmax) and `logits` (N, C, H, W float32), the default outputs.
INPUT_NAME = "input"
OUTPUT_NAMES = ("labels", "logits")
#: Or, alone: `lowres`, the logits (N, C, h, w) at the model's output stride (1/4 of the input),
#: before its final resize; engines compute the labels from it (mmseg-exact, in bands, never
#: all C channels at full size) and the full-size logits when asked.
LOWRES = "lowres"
GRAPH_OUTPUTS = (*OUTPUT_NAMES, LOWRES)


# Bounds on what a manifest may make us read: a manifest is a few KB, a model file a few GB.
MAX_MANIFEST_BYTES = 16 << 20
MAX_FILE_BYTES = 64 << 30
_SHA256_HEX = frozenset("0123456789abcdef")


# --- the manifest, typed ---------------------------------------------------------------------
@dataclass(frozen=True)
class InputSpec:
    """The package's input: name, layout, dtype and (N, C, H, W), dynamic axes as names."""

    name: str = INPUT_NAME
    layout: str = "NCHW"
    dtype: str = "float32"
    shape: tuple[int | str, ...] | None = None
    dynamic_axes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, *, where: str) -> InputSpec:
        d = _mapping(data, f"{where} 'input'")
        shape = d.get("shape")
        if shape is not None:
            shape = tuple(_list(shape, f"{where} 'input.shape'"))
            if len(shape) != 4 or not all(
                    (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
                    or (isinstance(v, str) and v) for v in shape):
                raise PackageError(f"{where} 'input.shape' must be 4 positive integers or axis "
                                   f"names (N, C, H, W), got {list(shape)!r}")
        axes = _mapping(d.get("dynamic_axes", {}), f"{where} 'input.dynamic_axes'")
        if not all(isinstance(v, str) for v in axes.values()):
            raise PackageError(f"{where} 'input.dynamic_axes' must map axes to names")
        return cls(name=_str(d.get("name", INPUT_NAME), f"{where} 'input.name'"),
                   layout=_str(d.get("layout", "NCHW"), f"{where} 'input.layout'"),
                   dtype=_str(d.get("dtype", "float32"), f"{where} 'input.dtype'"),
                   shape=shape, dynamic_axes=dict(axes))


@dataclass(frozen=True)
class ModelInfo:
    """What the package computes: the OCRNet variant and its number of classes."""

    variant: str | None = None
    num_classes: int | None = None

    @classmethod
    def from_json(cls, data: Any, *, where: str) -> ModelInfo:
        d = _mapping(data, f"{where} 'model'")
        variant = d.get("variant")
        if variant is not None:
            variant = _str(variant, f"{where} 'model.variant'")
        n = d.get("num_classes")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise PackageError(f"{where} 'model.num_classes' must be a positive integer, "
                               f"got {n!r}")
        return cls(variant=variant, num_classes=n)


@dataclass(frozen=True)
class Manifest:
    """`ocrnet.json`, checked: every field tools read has the type they expect.

    `from_json` raises `PackageError` (never a `TypeError` later in some tool) for a wrong
    format, a newer version, a missing or wrongly typed field, and for file names that are not
    plain relative paths inside the package.
    """

    format_version: int
    backend: str
    precision: Precision
    files: Mapping[str, str]
    input: InputSpec
    model: ModelInfo
    classes: tuple[str, ...] | None
    outputs: tuple[str, ...]
    runtime: Mapping[str, Any]
    raw: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: Any, *, where: str = MANIFEST) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PackageError(f"{where} is not an ocrnet engine manifest (no format {FORMAT!r})")
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise PackageError(f"{where} has no integer format_version")
        if version > FORMAT_VERSION:
            raise PackageError(
                f"{where} has format version {version}, newer than this ocrnet reads "
                f"({FORMAT_VERSION}); upgrade ocrnet or rebuild the package with this version")
        for key in ("backend", "precision", "files"):
            if key not in data:
                raise PackageError(f"{where} lacks the required field {key!r}; rebuild the "
                                   "package")
        backend = _str(data["backend"], f"{where} 'backend'")
        try:
            precision = Precision.parse(_str(data["precision"], f"{where} 'precision'"))
        except PackageError:
            raise
        except OcrnetError as err:
            raise PackageError(f"{where}: {err}") from None
        files = _mapping(data["files"], f"{where} 'files'")
        for name, digest in files.items():
            check_member_name(name, where=where)
            if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= _SHA256_HEX):
                raise PackageError(f"{where} lists {name!r} without a sha256 (64 hex digits)")
        classes = data.get("classes")
        if classes is not None:
            classes = tuple(_list(classes, f"{where} 'classes'"))
            if not all(isinstance(c, str) for c in classes):
                raise PackageError(f"{where} 'classes' must be a list of names")
        palette = data.get("palette")
        if palette is not None and not all(
                isinstance(c, list) and len(c) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255
                        for v in c)
                for c in _list(palette, f"{where} 'palette'")):
            raise PackageError(f"{where} 'palette' must be a list of [R, G, B] (0..255)")
        outputs = tuple(_list(data.get("outputs", list(OUTPUT_NAMES)), f"{where} 'outputs'"))
        if not outputs or not all(o in GRAPH_OUTPUTS for o in outputs) or \
                (LOWRES in outputs and len(outputs) > 1):
            raise PackageError(f"{where} 'outputs' must name some of {', '.join(OUTPUT_NAMES)}, "
                               f"or {LOWRES} alone")
        # Blocks that tools read with .get(): wrongly typed, they would fail deep inside a tool.
        for key in ("runtime", "preprocess", "source", "graph_rewrites", "tools"):
            if data.get(key) is not None:
                _mapping(data[key], f"{where} {key!r}")
        if data.get("calibration") is not None:
            _mapping(data["calibration"], f"{where} 'calibration'")
        if data.get("source") is not None:
            _check_source(data["source"], f"{where} 'source'")
        return cls(format_version=version, backend=backend, precision=precision,
                   files=dict(files),
                   input=InputSpec.from_json(data.get("input", {}), where=where),
                   model=ModelInfo.from_json(data.get("model", {}), where=where),
                   classes=classes, outputs=outputs, runtime=dict(data.get("runtime") or {}),
                   raw=data)


def _check_source(source: dict[str, Any], what: str) -> None:
    """`source` (and its `checkpoint`) name files by path and sha256: strings, or absent."""
    _mapping(source, what)
    for block, label in ((source, what), (source.get("checkpoint"), f"{what}.checkpoint")):
        if block is None:
            continue
        _mapping(block, label)
        for key in ("path", "sha256", "kind"):
            if key in block and not isinstance(block[key], str):
                raise PackageError(f"{label}.{key} must be a string, got {block[key]!r}")


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PackageError(f"{what} must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise PackageError(f"{what} must be a list, got {type(value).__name__}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise PackageError(f"{what} must be a non-empty string, got {value!r}")
    return value


def check_member_name(name: Any, *, where: str = MANIFEST) -> str:
    """A manifest's file name: a plain relative POSIX path inside the package, else
    `PackageError`. No absolute paths, `..`, `.`, empty parts, backslashes or NULs."""
    if not isinstance(name, str) or not name:
        raise PackageError(f"{where} lists a file name that is not a string: {name!r}")
    parts = name.split("/")
    if (name.startswith("/") or "\\" in name or "\0" in name or len(name) > 1024
            or any(p in ("", ".", "..") for p in parts) or name == MANIFEST):
        raise PackageError(f"{where} lists {name!r}, which is not a file inside the package; "
                           "the manifest was tampered with, rebuild the package")
    return name


def member_stat(root: Path, name: str) -> os.stat_result | None:
    """lstat of `root/name` after checking no component is a symlink; None if missing."""
    current = root
    info = None
    for part in name.split("/"):
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(info.st_mode):
            raise PackageError(f"package {root}: {name!r} goes through a symbolic link "
                               f"({current}); packages hold plain files only, rebuild it")
    return info
