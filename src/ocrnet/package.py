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
import json
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrnet.errors import OcrnetError, PackageError
from ocrnet.fileio import is_stale, output_error, prepare_folder, sha256_file, temp_suffix
from ocrnet.precision import Precision

__all__ = [
    "FORMAT", "FORMAT_VERSION", "INPUT_NAME", "MANIFEST", "OUTPUT_NAMES", "InputSpec",
    "Manifest", "ModelInfo", "Package", "PackageWriter", "check_member_name", "is_package",
    "read_package", "replaceable_package", "sha256_file", "tool_versions",
]

FORMAT = "ocrnet-engine"
FORMAT_VERSION = 1
MANIFEST = "ocrnet.json"
_PARTIAL = ".partial-"

#: Tensor names of every exported graph and package: `input` (NCHW float32, normalized) ->
#: `labels` (N, H, W uint8 argmax) and `logits` (N, C, H, W float32).
INPUT_NAME = "input"
OUTPUT_NAMES = ("labels", "logits")


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
        if not outputs or not all(o in OUTPUT_NAMES for o in outputs):
            raise PackageError(f"{where} 'outputs' must name some of {', '.join(OUTPUT_NAMES)}")
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


def _member(root: Path, name: str) -> os.stat_result | None:
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
                if _PARTIAL in path.name else "; build one with `ocrnet build`")
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
        info = _member(package.path, name)
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


class PackageWriter:
    """Stage a package's files in a temporary directory, then commit it atomically.

        with PackageWriter(out) as writer:
            (writer.dir / "model.onnx").write_bytes(...)
            writer.commit({"backend": "onnxruntime", "precision": "fp32", ...})

    Leaving the block without `commit` (an exception) removes the staging directory.

    What may be replaced is decided twice, at the start and again at commit: nothing unless
    `overwrite`, and then only a directory that `replaceable_package` accepts, the same one
    (same inode and manifest) that was checked at the start. The new package is renamed into
    place without replacing anything (`renameat2(RENAME_NOREPLACE)`), under a lock on the
    parent folder, so of two builds racing for one `out` one wins and the other fails naming it.
    Leftovers of killed builds into the same `out` (staging and set-aside directories of dead
    processes) are removed.
    """

    def __init__(self, out: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.out = Path(out).absolute()
        self.overwrite = overwrite
        self._replacing: tuple[int, int, str] | None = None
        if os.path.lexists(self.out):
            if not overwrite:
                raise PackageError(f"{self.out} already exists; pass --overwrite to replace it")
            self._replacing = self._check_replaceable()
        prepare_folder(self.out.parent)
        _clean_leftovers(self.out)
        busy = [p for p in _siblings(self.out, _PARTIAL) if not is_stale(p[1], p[2])]
        if busy:
            raise PackageError(
                f"another build (process {busy[0][1]}) is writing {self.out} right now "
                f"(staging in {busy[0][0]}); wait for it, or delete that folder if no build runs")
        self.dir = self.out.with_name(
            f".{self.out.name}{_PARTIAL}{temp_suffix()}")
        try:
            self.dir.mkdir()
        except OSError as err:
            raise output_error(self.dir, err) from None
        self.package: Package | None = None

    def _check_replaceable(self) -> tuple[int, int, str]:
        why = replaceable_package(self.out)
        if why is not None:
            # Refuse to delete something that is not ours (a file, a user's folder).
            raise PackageError(f"{self.out} exists and is not an engine package that "
                               f"--overwrite may replace: {why}; not replacing it")
        # Identity = the folder's inode and its manifest's hash: an inode alone can be reused by
        # a folder made after this one was deleted.
        info = os.lstat(self.out)
        return info.st_dev, info.st_ino, sha256_file(self.out / MANIFEST)

    def __enter__(self) -> PackageWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.package is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self, meta: Mapping[str, Any]) -> Package:
        """Hash the staged files, write the manifest last, and rename into place."""
        try:
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
            full = json.loads(json.dumps(full, default=str))  # what a reader will see
            manifest = Manifest.from_json(full, where=f"manifest for {self.out}")
            (self.dir / MANIFEST).write_text(json.dumps(full, indent=2) + "\n")
        except OSError as err:
            raise output_error(self.out, err) from None
        with _locked(self.out.parent):
            self._swap()
        self.package = Package(self.out, full, manifest)
        return self.package

    def _swap(self) -> None:
        old = None
        if os.path.lexists(self.out):
            if self._replacing is None:
                raise PackageError(f"{self.out} appeared while this build ran (another build or "
                                   "program made it); not replacing it, the new package is "
                                   "discarded")
            if self._check_replaceable() != self._replacing:
                raise PackageError(f"{self.out} was replaced by another program while this "
                                   "build ran; not replacing it, the new package is discarded")
            old = self.out.with_name(f".{self.out.name}{_OLD}{temp_suffix()}")
            os.rename(self.out, old)  # rename() cannot replace a non-empty directory
        try:
            _rename_noreplace(self.dir, self.out)
        except FileExistsError:
            if old is not None:
                _rename_noreplace(old, self.out)  # put it back
            raise PackageError(f"{self.out} appeared while this build ran; not replacing it, "
                               "the new package is discarded") from None
        except OSError as err:
            if old is not None:
                with contextlib.suppress(OSError):
                    _rename_noreplace(old, self.out)
            raise output_error(self.out, err) from None
        if old is not None:
            _remove_package(old)


_OLD = ".old-"


def _siblings(out: Path, kind: str) -> list[tuple[Path, int, str]]:
    """`.NAME<kind><pid>-<tag>` entries next to `out`, with their pid and tag."""
    prefix = f".{out.name}{kind}"
    found = []
    try:
        entries = list(os.scandir(out.parent))
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(prefix):
            pid, _, tag = entry.name[len(prefix):].partition("-")
            if pid.isdigit():
                found.append((Path(entry.path), int(pid), tag))
    return found


def _clean_leftovers(out: Path) -> None:
    """Remove staging and set-aside directories of killed builds into `out`."""
    for path, pid, tag in _siblings(out, _PARTIAL) + _siblings(out, _OLD):
        if is_stale(pid, tag) and path.is_dir() and not path.is_symlink():
            if _OLD in path.name:
                _remove_package(path)
            else:
                shutil.rmtree(path, ignore_errors=True)


def _remove_package(path: Path) -> None:
    """Delete a package that `replaceable_package` accepted: only its listed files and their
    folders, so anything put there since stays (and the folder with it)."""
    try:
        names = list(read_package(path, verify=False).files)
    except PackageError:
        names = []
    for name in [*names, MANIFEST]:
        with contextlib.suppress(OSError):
            (path / name).unlink()
    for root, _dirs, _files in sorted(os.walk(path), key=lambda t: -len(t[0])):
        with contextlib.suppress(OSError):
            os.rmdir(root)


@contextlib.contextmanager
def _locked(folder: Path) -> Any:
    """An exclusive lock on `folder` among ocrnet processes (flock on the folder itself, so no
    lock file is left behind)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: renameat2 is the only guard
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as err:
        raise output_error(folder, err) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


_RENAME_NOREPLACE = 1


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`, failing with `FileExistsError` if `dst` exists (even an empty
    folder, which plain rename() would silently replace)."""
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd = -100
        if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst),
                     _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), str(dst))
        if code not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(code, os.strerror(code), str(dst))
    # No renameat2 here (or not on this filesystem): the parent folder's lock makes the check
    # and the rename one step among ocrnet processes.
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)
