"""Writing a package: staged in a hidden folder, committed by a rename that never replaces what
is not ours."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ocrnet.errors import PackageError
from ocrnet.fileio import is_stale, output_error, prepare_folder, sha256_file, temp_suffix
from ocrnet.package.manifest import FORMAT, FORMAT_VERSION, MANIFEST, Manifest
from ocrnet.package.manifest import PARTIAL as _PARTIAL
from ocrnet.package.reader import Package, read_package, replaceable_package
from ocrnet.precision import Precision


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
