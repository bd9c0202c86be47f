"""The run record: what a `predict` output folder was made by, so a rerun resumes only its own.

`ocrnet-run.json` in `--out` (written atomically before any image) holds the identity of the
run (the model's sha256, every option that changes an output byte, the tool's version) and
the outputs it owns (paths relative to `--out`). A rerun with the same identity skips the
images whose owned outputs all exist ("resumed"); with another identity, or over files no
record owns, it refuses in one line naming what differs, unless `overwrite` (which then
replaces exactly this run's planned outputs and nothing else in the folder).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrnet.engines.base import Engine
from ocrnet.errors import OcrnetError
from ocrnet.fileio import atomic_write_text, sha256_file
from ocrnet.work.plan import PredictOptions, PredictPlan

RECORD_NAME = "ocrnet-run.json"
_SHOW = 3


def model_identity(model: Engine | str | os.PathLike[str]) -> dict[str, str]:
    """The model's name and sha256: a package's manifest (which lists every file's sha256),
    a single file's bytes, or an open engine's metadata (all an open engine tells)."""
    if isinstance(model, Engine):
        text = json.dumps(model.metadata, sort_keys=True, default=str)
        return {"name": model.display_name,
                "sha256": hashlib.sha256(f"{type(model).__name__}\n{text}".encode()).hexdigest()}
    path = Path(model)
    from ocrnet.package import MANIFEST

    if path.is_dir() and not (path / MANIFEST).is_file():
        from ocrnet.package import read_package

        read_package(path)  # raises the reader's own error (a partial build, not a package)
    if not path.exists():  # open_model's own words
        raise OcrnetError(f"no model at {path}: expected a .pth checkpoint, an .onnx file or an "
                          "engine package directory")
    try:
        digest = sha256_file(path / MANIFEST if path.is_dir() else path)
    except OSError as err:
        raise OcrnetError(f"cannot read model {path}: {err.strerror or err}") from None
    return {"name": str(model), "sha256": digest}


def run_identity(model: dict[str, str], options: PredictOptions, device: str) -> dict[str, Any]:
    """Everything that decides an output byte (the batch size and thread counts do not)."""
    from ocrnet import __version__

    scale = options.scale
    return {
        "tool": f"ocrnet {__version__}",
        "model_sha256": model["sha256"],
        "format": options.format,
        "color": options.color,
        "overlay": options.overlay,
        "opacity": options.opacity if options.overlay else None,
        "scale": list(scale) if isinstance(scale, tuple) else scale,
        "resize": options.resize,
        "device": device,
        # only where not the default, so records written before test modes still match
        **({"mode": options.mode.to_dict()} if options.mode.name != "whole" else {}),
        **({"confidence": True} if options.confidence else {}),
    }


@dataclass
class Resume:
    """Which items still need work (`todo`, indices into the plan) and how many were done."""

    todo: list[int]
    resumed: int


def resume(plan: PredictPlan, model: dict[str, str], identity: dict[str, Any], *,
           overwrite: bool) -> Resume:
    """Compare `--out`'s record with this run, write this run's record, say what is left."""
    out = plan.out_dir
    suffixes = plan.options.suffixes
    planned = [[_rel(p, out) for p in item.outputs(suffixes)] for item in plan.items]
    flat = [p for outputs in planned for p in outputs]
    old = _read(out / RECORD_NAME)
    same = old is not None and old.get("identity") == identity
    owned = set(old.get("outputs", [])) if same and old else set()
    existing = {p for p in flat if (out / p).is_file()}
    if not overwrite:
        if old is not None and not same:
            theirs = [p for p in old.get("outputs", []) if (out / p).is_file()]
            if theirs:
                raise OcrnetError(_differs(out, old, model, identity, len(theirs)))
        foreign = sorted(existing - owned)
        if foreign:
            shown = ", ".join(foreign[:_SHOW]) + (" ..." if len(foreign) > _SHOW else "")
            raise OcrnetError(f"{out} already holds {len(foreign)} file(s) this run would write "
                              f"that no matching run record ({RECORD_NAME}) owns: {shown}; "
                              "pass --overwrite to replace them, or choose another --out")
    done = existing & owned if not overwrite else set()
    todo = [i for i, outputs in enumerate(planned) if not all(p in done for p in outputs)]
    keep = sorted(owned | set(flat)) if same else sorted(set(flat))
    record = {"identity": identity, "model": model["name"], "outputs": keep}
    atomic_write_text(out / RECORD_NAME, json.dumps(record, indent=1) + "\n")
    return Resume(todo, len(plan.items) - len(todo))


def _differs(out: Path, old: dict[str, Any], model: dict[str, str], identity: dict[str, Any],
             count: int) -> str:
    """One line: what of the record in `out` differs from this run."""
    theirs = old.get("identity") if isinstance(old.get("identity"), dict) else {}
    parts = []
    for key, mine in identity.items():
        was = theirs.get(key)
        if was == mine:
            continue
        if key == "model_sha256":
            parts.append(f"model {old.get('model', '?')} (sha256 {str(was)[:12]}) there, "
                         f"{model['name']} (sha256 {str(mine)[:12]}) now")
        else:
            parts.append(f"{key} {was!r} there, {mine!r} now")
    what = "; ".join(parts) or "another run record"
    return (f"{out} holds {count} output(s) of another run ({what}); pass --overwrite to "
            "replace this run's outputs, or choose another --out")


def _read(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"identity": "unreadable"}
    return data if isinstance(data, dict) else {"identity": "unreadable"}


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
