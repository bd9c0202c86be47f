"""Reading a package: the manifest, then every listed file re-hashed; and whether a folder is
a package `--overwrite` may delete."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrnet.errors import PackageError
from ocrnet.fileio import sha256_file
from ocrnet.package.manifest import (
    MANIFEST,
    MAX_FILE_BYTES,
    MAX_MANIFEST_BYTES,
    PARTIAL,
    Manifest,
    check_member_name,
    member_stat,
)
from ocrnet.precision import Precision


@dataclass(frozen=True)
class Package:
    """A verified engine package: its directory and its manifest."""

    path: Path
    meta: dict[str, Any]
    manifest: Manifest | None = None

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
        return self.path / check_member_name(name, where=str(self.path / MANIFEST))


def is_package(path: str | os.PathLike[str]) -> bool:
    """True if `path` is a directory with a manifest (not yet verified)."""
    return (Path(path) / MANIFEST).is_file()


def _read_manifest(path: Path) -> Any:
    manifest = path / MANIFEST
    try:
        fd = os.open(manifest, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as fh:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MANIFEST_BYTES:
                raise PackageError(f"{manifest} is not a regular file of at most "
                                   f"{MAX_MANIFEST_BYTES >> 20} MiB; rebuild the package")
            data = fh.read(MAX_MANIFEST_BYTES + 1)
        return json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise PackageError(f"{manifest} cannot be read ({err}); rebuild the package") from None


def read_package(path: str | os.PathLike[str], *, verify: bool = True) -> Package:
    """Read and check a package: format, version, field types, file names, and (with `verify`)
    that every listed file is a regular file inside the package with its recorded sha256."""
    path = Path(path)
    if not path.is_dir():
        raise PackageError(f"engine package {path} does not exist or is not a directory")
    if not os.path.lexists(path / MANIFEST):
        hint = (" (it is the staging directory of an interrupted build: delete it and build again)"
                if PARTIAL in path.name else "; build one with `ocrnet build`")
        raise PackageError(f"{path} is not an engine package: it has no {MANIFEST}{hint}")
    if (path / MANIFEST).is_symlink():
        raise PackageError(f"{path / MANIFEST} is a symbolic link; packages hold plain files only")
    manifest = Manifest.from_json(_read_manifest(path), where=str(path / MANIFEST))
    package = Package(path, dict(manifest.raw), manifest)
    if verify:
        _verify_files(package)
    return package


def _verify_files(package: Package) -> None:
    missing, changed = [], []
    for name, digest in package.files.items():
        info = member_stat(package.path, name)
        if info is None:
            missing.append(name)
            continue
        if not stat.S_ISREG(info.st_mode):
            raise PackageError(f"package {package.path}: {name!r} is not a regular file; "
                               "rebuild the package")
        if info.st_size > MAX_FILE_BYTES:
            raise PackageError(f"package {package.path}: {name!r} is {info.st_size:,} bytes, "
                               f"more than a package file can be ({MAX_FILE_BYTES:,})")
        try:
            actual = sha256_file(package.path / name)
        except OSError as err:
            raise PackageError(f"package {package.path}: cannot read {name!r} "
                               f"({err.strerror or err})") from None
        if actual != digest:
            changed.append(name)
    if missing or changed:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + (
            [f"changed since it was built: {', '.join(changed)}"] if changed else [])
        raise PackageError(
            f"package {package.path} is incomplete or was modified ({'; '.join(parts)}); "
            "rebuild it with `ocrnet build`"
        )


def replaceable_package(path: str | os.PathLike[str]) -> str | None:
    """None if `path` is a package `--overwrite` may delete, else why not.

    Deletable means provably ours: a real directory (not a link) holding a valid manifest, and
    nothing but the manifest, the files it lists and the folders that hold them.
    """
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return "it is not a directory"
    try:
        package = read_package(path, verify=False)
    except PackageError as err:
        return f"it is not an engine package ({err})"
    listed = {MANIFEST, *package.files}
    folders = {"/".join(n.split("/")[:i]) for n in package.files
               for i in range(1, n.count("/") + 1)}
    unlisted = []
    for root, dirs, names in os.walk(path):
        rel_root = Path(root).relative_to(path).as_posix()
        for n in [*dirs, *names]:
            rel = n if rel_root == "." else f"{rel_root}/{n}"
            full = Path(root) / n
            if full.is_symlink() or (rel not in listed and rel not in folders) or (
                    rel in folders and not full.is_dir()):
                unlisted.append(rel)
    if unlisted:
        shown = ", ".join(sorted(unlisted)[:5]) + (" ..." if len(unlisted) > 5 else "")
        return f"it holds files its manifest does not list: {shown}"
    return None


def tool_versions(*modules: str) -> dict[str, str]:
    """Versions of the named Python packages that are importable (for the manifest)."""
    from importlib import metadata

    out = {}
    for name in ("ocrnet", *modules):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out
