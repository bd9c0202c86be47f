"""An opt-in folder of ONNX exports, so that building one checkpoint again (another precision,
another backend, the same shape) does not export it again.

Set `OCRNET_EXPORT_CACHE=DIR` and `build` keeps each export of a checkpoint in DIR
under a key of everything that decides its bytes: the checkpoint's sha256, the example shape,
which axes are symbolic, Winograd, the outputs, the opset, the versions of ocrnet, torch, onnx
and onnxscript, and a digest of the exporter's and the model's own source files (a changed
exporter in a working tree never reuses an older graph). Unset, nothing is cached.

- **Verified on every use.** Each entry records its file's sha256; a copy is used only when the
  bytes copied match it, otherwise the entry is dropped and the model exported again (one line
  on stderr says so).
- **One export per key at a time.** An exclusive `flock` on the entry's lock file spans the
  look-up and the export, so two builds of the same key (two processes, two test workers)
  export once.
- **Bounded.** At most `MAX_ENTRIES` entries; storing one more removes the least recently used.
- **Never the reason a build fails.** A cache folder that cannot be made, locked or written to
  is said in one line on stderr and the build exports as if it were unset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ocrnet.errors import OutputError
from ocrnet.fileio import atomic_path, atomic_write_text, sha256_file

ENV = "OCRNET_EXPORT_CACHE"
MAX_ENTRIES = 8
_TOOLS = ("torch", "onnx", "onnxscript")  # and ocrnet itself (tool_versions adds it)


def folder() -> Path | None:
    """The cache folder `OCRNET_EXPORT_CACHE` names, or None (no caching)."""
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def export_key(source_sha256: str, shape: Sequence[int], *, dynamic: bool = False,
               dynamic_batch: bool = False, winograd: bool = False,
               outputs: Sequence[str] = (), opset: int = 0) -> str:
    """The entry name of one export: a digest of everything that changes its bytes."""
    from ocrnet.package import tool_versions

    facts = {"source_sha256": source_sha256, "shape": [int(d) for d in shape],
             "dynamic": dynamic, "dynamic_batch": dynamic_batch, "winograd": winograd,
             "outputs": list(outputs), "opset": opset,
             "tools": tool_versions(*_TOOLS), "code": _code_digest()}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def _code_digest() -> str:
    """A digest of the files that write the graph (the exporter, the model, Winograd)."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted([root / "export.py", *(root / "model").glob("*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def exported(out: Path, key: str, export: Callable[[], Any]) -> bool:
    """Write the export of `key` to `out`: copied from the cache when it holds a verified entry
    (True), else by calling `export` (which writes `out`) and storing the result (False)."""
    cache = folder()
    if cache is None:
        export()
        return False
    try:
        cache.mkdir(parents=True, exist_ok=True)
        lock = open(cache / f"{key}.lock", "a")  # noqa: SIM115 - held by _locked below
    except OSError as err:
        print(f"ocrnet: export cache {cache} unusable ({err.strerror}); exporting without it",
              file=sys.stderr)
        export()
        return False
    with lock, _locked(lock):
        if _fetch(cache, key, out):
            return True
        export()
        _store(cache, key, out)
        return False


def _fetch(cache: Path, key: str, out: Path) -> bool:
    entry, record = cache / f"{key}.onnx", cache / f"{key}.json"
    try:
        want = json.loads(record.read_text())["sha256"]
        with atomic_path(out) as tmp:
            shutil.copyfile(entry, tmp)
            if sha256_file(tmp) != want:
                raise ValueError("its bytes do not match the recorded sha256")
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"ocrnet: export cache entry {entry} not used ({err}); exporting again",
              file=sys.stderr)
        for path in (entry, record):
            path.unlink(missing_ok=True)
        return False
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(record)  # most recently used
    return True


def _store(cache: Path, key: str, out: Path) -> None:
    """Keep `out` as the entry of `key` (a failure here never fails the build)."""
    try:
        with atomic_path(cache / f"{key}.onnx") as tmp:
            shutil.copyfile(out, tmp)
        atomic_write_text(cache / f"{key}.json", json.dumps({"sha256": sha256_file(out)}))
        _prune(cache)
    except (OSError, OutputError) as err:
        print(f"ocrnet: export cache {cache}: entry not stored ({err})", file=sys.stderr)


def _prune(cache: Path) -> None:
    records = sorted(cache.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for record in records[MAX_ENTRIES:]:
        for path in (record, record.with_suffix(".onnx"), record.with_suffix(".lock")):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(fh: IO[str]) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, at worst two exports
        yield
        return
    fcntl.flock(fh, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
