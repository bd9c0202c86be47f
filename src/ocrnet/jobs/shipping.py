"""The model travels with the job: through Ray's object store, never a shared path.

The driver reads the package folder (or one .pth / .onnx file) into the object store
(`ship_model`); on each node an actor takes the node's copy (`materialize`); the driver asks
every node to drop its copy when the job ends (`release_model`).

The node's copy, in `<temp>/ocrnet-ray-models-<uid>` (made 0700; refused if another user owns
it or others may write it):

- **Verified on every use.** Before a path is handed out, the copy is checked against the sha256
  the driver shipped: a package's manifest hash, every listed file's hash, and no file that was
  not shipped; a single .pth/.onnx file's own hash. A marker file proves nothing. A copy that
  fails is removed and fetched again; a fresh copy that fails too is refused in one line naming
  the node.
- **One fetch per node.** Checking and fetching happen under an exclusive `flock` on the
  entry's `.fetch` lock file, so of the actors starting together on a node one fetches and the
  others wait and then verify its copy.
- **Reference count, kept by the kernel.** Every process that takes a copy holds a shared
  `flock` on the entry's `.use` lock file for as long as it lives (the kernel drops it when the
  process ends, killed or not). A copy is removed only under an exclusive, non-blocking lock on
  that file: by `release_model` at the end of a job, and by any later `materialize` on the node
  (which sweeps copies no process holds). So no job deletes a copy another job is using; a copy
  still held when its job ends is left, and goes with the next job on that node.
- Disk and permission errors are one-line `OutputError`s naming the node and the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrnet.errors import OcrnetError, OutputError, PackageError
from ocrnet.fileio import output_error, sha256_file

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process locks, still verified
    fcntl = None  # type: ignore[assignment]

_CACHE = "ocrnet-ray-models"
_USE, _FETCH = ".use", ".fetch"
_RELEASE_WAIT_S = 5.0
_HELD: dict[str, int] = {}  # entry path -> fd of this process's shared lock on it
_HELD_LOCK = threading.Lock()


@dataclass(frozen=True)
class ShippedModel:
    """A model in Ray's object store: `files` maps relative paths to bytes; `digest` is the
    sha256 of the package manifest (which lists every file's sha256) or of the single file."""

    name: str
    source: str
    is_package: bool
    digest: str
    files: Any = field(repr=False)  # ray.ObjectRef -> dict[str, bytes] (or the dict itself)
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"model": self.source, "sha256": self.digest, "bytes": self.size,
                "shipped": "ray object store"}


def ship_model(ray: Any, path: str | os.PathLike[str]) -> ShippedModel:
    """Read `path` (a package folder, checked here first, or one .pth/.onnx file) into Ray's
    object store, so nodes without the driver's filesystem can open it."""
    files, digest = read_model(path)
    src = Path(path)
    size = sum(len(b) for b in files.values())
    return ShippedModel(src.name, str(path), src.is_dir(), digest, ray.put(files), size)


def read_model(path: str | os.PathLike[str]) -> tuple[dict[str, bytes], str]:
    """The bytes to ship (relative path -> bytes) and the digest a node checks them by."""
    from ocrnet.package import MANIFEST, read_package

    src = Path(path)
    files: dict[str, bytes] = {}
    if src.is_dir():
        package = read_package(src)
        for name in [MANIFEST, *package.files]:
            files[name] = (src / name).read_bytes()
        for name, digest in package.files.items():  # what is shipped is what was verified
            if hashlib.sha256(files[name]).hexdigest() != digest:
                raise PackageError(f"package {src} changed while it was being read ({name}); "
                                   "run the job again")
        return files, hashlib.sha256(files[MANIFEST]).hexdigest()
    if src.is_file():
        try:
            files[src.name] = src.read_bytes()
        except OSError as err:
            raise OcrnetError(f"cannot read model {src}: {err.strerror or err}") from None
        return files, hashlib.sha256(files[src.name]).hexdigest()
    raise OcrnetError(f"no model at {src}: expected an engine package folder, a .pth "
                      "checkpoint or an .onnx file")


def cache_root() -> Path:
    """This user's model cache folder on this node."""
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    return Path(tempfile.gettempdir()) / f"{_CACHE}-{uid}"


def materialize(model: ShippedModel, node_id: str, *,
                root: Path | None = None) -> tuple[Path, bool]:
    """This node's verified copy of `model`: its path, and whether this call fetched it.

    The calling process keeps a shared hold on the copy until it exits (see the module
    docstring), so no job on this node removes it meanwhile."""
    root = cache_root() if root is None else root
    node = node_id[:12]
    entry = root / _entry(model, node_id)
    try:
        _own_folder(root, node)
        _hold(entry)
        with _locked(entry.with_name(entry.name + _FETCH), fcntl and fcntl.LOCK_EX):
            fetched = False
            if _problem(model, entry) is not None:
                _remove(entry)
                _write_copy(model, entry)
                fetched = True
                problem = _problem(model, entry)
                if problem is not None:
                    _remove(entry)
                    raise PackageError(f"model {model.source} on Ray node {node}: {problem} "
                                       "right after it was fetched; not opening it")
        _sweep(root, keep=entry)
    except OSError as err:
        raise OutputError(f"Ray node {node}: {output_error(root, err)} (the node's model "
                          "cache; free space there or set TMPDIR)") from None
    return entry / _local_name(model), fetched


def _own_folder(root: Path, node: str) -> None:
    """Make `root` ours (0700), or refuse one that another user owns or others may write:
    whoever can write there chooses the model."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(root)
    uid = os.geteuid() if hasattr(os, "geteuid") else info.st_uid
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022:
        raise OutputError(f"Ray node {node}: the model cache {root} is not a folder of this "
                          f"user that only it can write (owner uid {info.st_uid}, mode "
                          f"{stat.S_IMODE(info.st_mode):o}); not using it: remove it or set "
                          "TMPDIR")


def _problem(model: ShippedModel, entry: Path) -> str | None:
    """Why the copy at `entry` is not the shipped model (None: it is, byte for byte)."""
    from ocrnet.package import MANIFEST, read_package

    target = entry / _local_name(model)
    if not os.path.lexists(target):
        return "no copy"
    if model.is_package:
        if not target.is_dir() or target.is_symlink():
            return "its copy is not a folder"
        if not (target / MANIFEST).is_file() or sha256_file(target / MANIFEST) != model.digest:
            return "its copy's manifest is not the shipped one"
        try:
            listed = set(read_package(target).files) | {MANIFEST}
        except PackageError as err:
            return f"its copy does not match its manifest ({err})"
        if _files_under(target) != listed:
            return "its copy holds files that were not shipped"
        return None
    if not target.is_file() or target.is_symlink() or sha256_file(target) != model.digest:
        return "its copy is not the shipped file"
    return None


def _files_under(folder: Path) -> set[str]:
    found = set()
    for base, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            found.add(Path(base, name).relative_to(folder).as_posix())
    return found


def _write_copy(model: ShippedModel, entry: Path) -> None:
    """Fetch the files from the object store and write them, checked first, as `entry`."""
    files = _fetch(model)
    from ocrnet.package import MANIFEST

    check = files[MANIFEST] if model.is_package else files[model.name]
    got = hashlib.sha256(check).hexdigest()
    if got != model.digest:
        raise PackageError(f"model {model.source} arrived on Ray node {entry.name[:12]} with "
                           f"sha256 {got[:16]}..., expected {model.digest[:16]}...; not "
                           "opening it")
    # Stages of fetches killed midway: under the fetch lock no live process writes one.
    for left in entry.parent.glob(f".{entry.name}.*"):
        shutil.rmtree(left, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        base = stage / _local_name(model)
        for rel, data in files.items():
            out = base / rel if model.is_package else base
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        os.rename(stage, entry)  # under the fetch lock: nobody else writes this entry
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _fetch(model: ShippedModel) -> dict[str, bytes]:
    if isinstance(model.files, dict):  # already bytes (a model read on this machine)
        return model.files
    import ray

    return ray.get(model.files)


def _local_name(model: ShippedModel) -> str:
    # A single file keeps its suffix: it is how `open_model` tells a checkpoint from ONNX.
    return "package" if model.is_package else "model" + Path(model.name).suffix


def _entry(model: ShippedModel, node_id: str) -> str:
    """A node's cache entry: by content, not name (one copy however the package is called)."""
    return f"{node_id[:12]}-{model.digest[:16]}-{_local_name(model)}"


# --- holds and removal -------------------------------------------------------------------------
def _hold(entry: Path) -> None:
    """Take this process's shared hold on `entry` (once; kept until the process exits)."""
    with _HELD_LOCK:
        if str(entry) in _HELD:
            return
        fd = _lock_fd(entry.with_name(entry.name + _USE), fcntl and fcntl.LOCK_SH)
        _HELD[str(entry)] = fd


def let_go(model: ShippedModel, node_id: str, *, root: Path | None = None) -> None:
    """Drop this process's hold on its copy of `model` (a process that lives on after its job;
    an actor just exits)."""
    entry = (cache_root() if root is None else root) / _entry(model, node_id)
    with _HELD_LOCK:
        fd = _HELD.pop(str(entry), None)
    if fd is not None:
        os.close(fd)


def _lock_fd(path: Path, mode: int | None, *, wait: bool = True) -> int:
    """An fd holding a `flock` of `mode` on `path`, the file that is at `path` now (a remover
    may unlink it between our open and our lock: then lock the new one). -1 if `wait` is False
    and another process holds a conflicting lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is None or mode is None:
            return fd
        try:
            fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return -1
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        os.close(fd)


@contextlib.contextmanager
def _locked(path: Path, mode: int | None) -> Any:
    fd = _lock_fd(path, mode)
    try:
        yield
    finally:
        os.close(fd)


def remove_copy(root: Path, name: str) -> bool:
    """Remove the cache entry `name` under `root` unless a process holds it; True if it is gone."""
    entry = root / name
    if not root.is_dir():
        return True
    use = entry.with_name(name + _USE)
    fd = _lock_fd(use, fcntl and fcntl.LOCK_EX, wait=False)
    if fd < 0:
        return False
    try:
        _remove(entry)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(use)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.with_name(name + _FETCH))
    finally:
        os.close(fd)
    return True


def _remove(entry: Path) -> None:
    if entry.is_symlink() or entry.is_file():
        entry.unlink()
    elif entry.exists():
        shutil.rmtree(entry)


def _sweep(root: Path, keep: Path) -> None:
    """Remove the copies no process holds (other models, ones left by ended jobs) and lock
    files whose copy is gone."""
    names = set()
    for child in root.iterdir():
        name = child.name
        for suffix in (_USE, _FETCH):
            name = name.removesuffix(suffix)
        if not name.startswith(".") and name != keep.name:
            names.add(name)
    for name in sorted(names):
        with contextlib.suppress(OSError):
            remove_copy(root, name)


def release_model(ray: Any, model: ShippedModel) -> None:
    """Drop every live node's copy of `model` that no process holds any more (the job is over;
    a copy still held is left, and goes with the next job on that node).

    One zero-CPU task pinned to each node, so it runs even while actors hold every CPU.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def remove(name: str) -> bool:
        deadline = time.monotonic() + _RELEASE_WAIT_S  # the job's actors are still exiting
        while not remove_copy(cache_root(), name):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    refs = [remove.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                node["NodeID"], soft=False)).remote(_entry(model, node["NodeID"]))
            for node in ray.nodes() if node.get("Alive")]
    with contextlib.suppress(Exception):  # best effort: a copy left in /tmp harms nothing
        ray.get(refs, timeout=60)
