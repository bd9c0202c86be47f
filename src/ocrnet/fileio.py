"""Atomic file output: every file the tool writes appears whole or not at all.

A file is written to a hidden temporary name in its own folder (`.NAME.tmp-<pid>-<random>`) and
renamed over the target only once it is complete; on any failure the temporary is removed and an
earlier file at the target stays as it was. A rename within one folder is atomic on POSIX, so a
reader (or a killed process) never sees half a file. `OSError`s (disk full, permission, a path
under a regular file, a name too long) become `OutputError` naming the target.

A process killed between creating and renaming its temporary leaves it behind; the next write
into the same folder removes such leftovers, recognised by the naming pattern and a process id
that no longer runs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from ocrnet.errors import OutputError

#: `.<target name>.tmp-<pid>-<8 random chars>`: what `atomic_path` creates and what cleaning
#: removes (only when <pid> is not a running process).
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-(?P<tag>[0-9a-f]{8})$")
#: The first 4 of those 8 hex digits name this machine: in a folder shared between machines (a
#: Ray cluster's NFS) a process id means nothing on another host, so only this host's
#: temporaries are ever judged dead.
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:4]
# Temporary names add about 30 characters; most filesystems cap a name at 255 bytes.
_MAX_NAME_BYTES = 200

_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()


def _temp_name(target: Path) -> str:
    name = target.name
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > _MAX_NAME_BYTES:
        name = raw[:_MAX_NAME_BYTES].decode("utf-8", "ignore")
    return f".{name}.tmp-{temp_suffix()}"


def temp_suffix() -> str:
    """`<pid>-<host tag><random>`: what makes a temporary name ours, and judgeable as stale."""
    return f"{os.getpid()}-{HOST_TAG}{secrets.token_hex(2)}"


def is_stale(pid: int, tag: str) -> bool:
    """True if a temporary tagged `pid`/`tag` was made on this host by a process now gone."""
    return tag[:4] == HOST_TAG and not pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """True unless `pid` is certainly not a running process (ours, or one we cannot signal,
    count as running: their files are left alone)."""
    if pid == os.getpid():
        return True  # another thread of ours may be writing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process: leave its files alone
    except OSError:
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries of killed writers in `folder`; return what was removed.

    Only names matching `TEMP_PATTERN` made on this host by a process that no longer runs
    are touched, and only
    regular files (a package's staging directories are `package.py`'s to clean).
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_PATTERN.match(entry.name)
        if not match or not is_stale(int(match["pid"]), match["tag"]):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _clean_once(folder: Path) -> None:
    # Once per folder and process: a folder of 100k predictions must not be listed 100k times.
    key = str(folder.absolute())
    with _cleaned_lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    clean_stale_temps(folder)


def _describe(err: OSError, target: str | os.PathLike[str] | None = None) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    if err.errno in (errno.ENOTDIR, errno.EEXIST) and err.filename is not None:
        # The OS names the path it was asked for; the user needs the file in the way.
        blocker = _first_non_folder(Path(os.fsdecode(err.filename)))
        if blocker is not None:
            if target is not None and blocker == Path(target):
                return "a file of that name is in the way"
            return f"{blocker} is a file, not a folder"
    return err.strerror or str(err)


def _first_non_folder(path: Path) -> Path | None:
    """The closest existing ancestor of `path` (or `path`) that is not a folder."""
    for candidate in reversed([path, *path.parents]):
        if candidate.is_dir():
            continue
        return candidate if os.path.lexists(candidate) else None
    return None


def output_error(path: str | os.PathLike[str], err: OSError) -> OutputError:
    """The one-line `OutputError` for an `OSError` met while writing `path`."""
    return OutputError(f"cannot write {path}: {_describe(err)}")


def prepare_folder(folder: str | os.PathLike[str]) -> Path:
    """Create `folder` (and its parents) if needed; `OutputError` if it cannot be a folder.

    Call it before long work, so that a bad output path fails in a second, not after an hour.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output folder {folder}: {_describe(err, folder)}") \
            from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into the folder {folder}: permission denied")
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`.

    The body writes the temporary itself (`torch.save(obj, tmp)`, `onnx.save(model, str(tmp))`).
    On any exception the temporary is removed and `path` is untouched; `OSError`s from the body
    or the rename become `OutputError` naming `path`. Writers that choose a format by the file's
    suffix (`cv2.imwrite`) must encode to bytes and use `atomic_write_bytes` instead.
    """
    target = Path(path)
    folder = target.parent
    prepare_folder(folder)
    _clean_once(folder)
    tmp = folder / _temp_name(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as err:
        _remove(tmp)
        if err.filename is not None and str(err.filename) not in (str(tmp), str(target)):
            raise  # about some other file the body touched: not ours to rename
        raise output_error(target, err) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        if tmp.is_dir() and not tmp.is_symlink():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints and models can be GBs).

    The one hash helper: package manifests, checkpoint facts and `ocrnet run`'s step keys.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically; return `path`. `OutputError` on failure."""
    # A plain open keeps the umask's mode (mkstemp would make it 0600); "x": never follow a
    # file someone planted at the temporary name.
    with atomic_path(path) as tmp, open(tmp, "xb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically; return `path`. `OutputError` on failure."""
    return atomic_write_bytes(path, text.encode(encoding))
