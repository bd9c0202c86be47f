"""Engine packages: a directory holding a backend's files plus `ocrnet.json` describing them.

A package is written into a hidden staging directory next to its destination and renamed into
place only once every file is written and the manifest (written last) lists their sha256. A
killed build therefore leaves at most a `.NAME.partial-*` directory without a manifest, which
`read_package` refuses. Loading re-hashes every listed file, so a missing or edited file is an
error rather than a silently different model.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrnet.errors import PackageError
from ocrnet.precision import Precision

FORMAT = "ocrnet-engine"
FORMAT_VERSION = 1
MANIFEST = "ocrnet.json"
_PARTIAL = ".partial-"

#: Tensor names of every exported graph and package: `input` (NCHW float32, normalized) ->
#: `labels` (N, H, W uint8 argmax) and `logits` (N, C, H, W float32).
INPUT_NAME = "input"
OUTPUT_NAMES = ("labels", "logits")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints and models can be GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Package:
    """A verified engine package: its directory and its manifest."""

    path: Path
    meta: dict[str, Any]

    @property
    def backend(self) -> str:
        return str(self.meta["backend"])

    @property
    def precision(self) -> Precision:
        return Precision.parse(self.meta["precision"])

    @property
    def files(self) -> dict[str, str]:
        """Backend file name -> sha256."""
        return dict(self.meta.get("files", {}))

    def file(self, name: str) -> Path:
        """Path of one of the package's files (checked to be listed in the manifest)."""
        if name not in self.files:
            raise PackageError(f"package {self.path} has no file {name!r} in its manifest")
        return self.path / name


def is_package(path: str | os.PathLike[str]) -> bool:
    """True if `path` is a directory with a manifest (not yet verified)."""
    return (Path(path) / MANIFEST).is_file()


def read_package(path: str | os.PathLike[str], *, verify: bool = True) -> Package:
    """Read and check a package: format, version, and (with `verify`) every file's sha256."""
    path = Path(path)
    if not path.is_dir():
        raise PackageError(f"engine package {path} does not exist or is not a directory")
    manifest = path / MANIFEST
    if not manifest.is_file():
        hint = (" (it is the staging directory of an interrupted build: delete it and build again)"
                if _PARTIAL in path.name else "; build one with `ocrnet build`")
        raise PackageError(f"{path} is not an engine package: it has no {MANIFEST}{hint}")
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PackageError(f"{manifest} cannot be read ({err}); rebuild the package") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PackageError(f"{manifest} is not an ocrnet engine manifest (no format {FORMAT!r})")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise PackageError(f"{manifest} has no integer format_version")
    if version > FORMAT_VERSION:
        raise PackageError(
            f"package {path} has format version {version}, newer than this ocrnet reads "
            f"({FORMAT_VERSION}); upgrade ocrnet or rebuild the package with this version"
        )
    for key in ("backend", "precision", "files"):
        if key not in meta:
            raise PackageError(f"{manifest} lacks the required field {key!r}; rebuild the package")
    package = Package(path, meta)
    if verify:
        _verify_files(package)
    return package


def _verify_files(package: Package) -> None:
    missing, changed = [], []
    for name, digest in package.files.items():
        file = package.path / name
        if not file.is_file():
            missing.append(name)
        elif sha256_file(file) != digest:
            changed.append(name)
    if missing or changed:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + (
            [f"changed since it was built: {', '.join(changed)}"] if changed else [])
        raise PackageError(
            f"package {package.path} is incomplete or was modified ({'; '.join(parts)}); "
            "rebuild it with `ocrnet build`"
        )


def tool_versions(*modules: str) -> dict[str, str]:
    """Versions of the named Python packages that are importable (for the manifest)."""
    from importlib import metadata

    out = {}
    for name in ("ocrnet", *modules):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


class PackageWriter:
    """Stage a package's files in a temporary directory, then commit it atomically.

        with PackageWriter(out) as writer:
            (writer.dir / "model.onnx").write_bytes(...)
            writer.commit({"backend": "onnxruntime", "precision": "fp32", ...})

    Leaving the block without `commit` (an exception) removes the staging directory.
    """

    def __init__(self, out: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.out = Path(out).absolute()
        if self.out.exists() and not overwrite:
            raise PackageError(f"{self.out} already exists; pass --overwrite to replace it")
        if self.out.exists() and not (self.out.is_dir() and is_package(self.out)):
            # Refuse to delete something that is not ours (a file, a user's folder).
            raise PackageError(f"{self.out} exists and is not an engine package; not replacing it")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f".{self.out.name}{_PARTIAL}", dir=self.out.parent))
        self.package: Package | None = None

    def __enter__(self) -> PackageWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.package is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self, meta: Mapping[str, Any]) -> Package:
        """Hash the staged files, write the manifest last, and rename into place."""
        files = {
            p.relative_to(self.dir).as_posix(): sha256_file(p)
            for p in sorted(self.dir.rglob("*")) if p.is_file() and p.name != MANIFEST
        }
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **meta,
            "files": files,
        }
        full["precision"] = Precision.parse(full["precision"]).value
        (self.dir / MANIFEST).write_text(json.dumps(full, indent=2, default=str) + "\n")
        old = None
        if self.out.exists():
            # rename() cannot replace a non-empty directory: move the old one aside first.
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.rename(self.out, old)
        os.rename(self.dir, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.package = Package(self.out, full)
        return self.package

