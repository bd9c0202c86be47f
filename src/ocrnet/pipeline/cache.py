"""The step cache of `ocrnet run`: each step's result keyed by a content hash of its inputs."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocrnet import __version__

Say = Callable[[str], None]


class StepCache:
    """`<out>/steps/<name>.json` = {"key": sha256 of the step's inputs, "result": ...}."""

    def __init__(self, out: Path, say: Say) -> None:
        from ocrnet.fileio import prepare_folder

        self.dir = prepare_folder(out / "steps")
        self.say = say

    @staticmethod
    def key(**inputs: Any) -> str:
        blob = json.dumps({"ocrnet": __version__, **inputs}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def run(self, name: str, key: str, work: Callable[[], Any],
            valid: Callable[[Any], bool] = lambda _r: True) -> Any:
        from ocrnet.fileio import atomic_write_text

        path = self.dir / f"{name}.json"
        hit, cached = self._read(path, key, valid)
        if hit:
            self.say(f"[cached] {name}")
            return cached
        self.say(f"[run] {name}")
        started = time.perf_counter()
        result = work()
        atomic_write_text(path, json.dumps(
            {"key": key, "seconds": round(time.perf_counter() - started, 1), "result": result},
            indent=1, default=str))
        return result

    @staticmethod
    def _read(path: Path, key: str, valid: Callable[[Any], bool]) -> tuple[bool, Any]:
        """(True, result) for a usable entry; a missing, unreadable, corrupt or stale entry is
        a miss (the step runs again and rewrites it), never an error that blocks resuming."""
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(cached, dict) and cached.get("key") == key and "result" in cached \
                    and valid(cached["result"]):
                return True, cached["result"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError,
                IndexError, RecursionError):
            pass
        return False, None


def digest(path: Path) -> str:
    """The file's sha256 (hex)."""
    from ocrnet.package import sha256_file

    return sha256_file(path)


def model_identity(path: Path) -> str:
    """What a model's results depend on: the checkpoint's or the package manifest's digest."""
    manifest = path / "ocrnet.json"
    return digest(manifest if manifest.exists() else path)


def slug(text: str) -> str:
    """`text` as a file-name part: lower case, every non-alphanumeric a dash."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
