"""The model travels with the job: through Ray's object store, never a shared path.

The driver reads the package folder (or one .pth / .onnx file) into the object store
(`ship_model`); on each node the first actor writes it once into a local temporary folder and
checks its sha256 against the driver's (`materialize`); the driver removes every node's copy
when the job ends (`release_model`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrnet.errors import OcrnetError, PackageError

_CACHE = "ocrnet-ray-models"


@dataclass(frozen=True)
class ShippedModel:
    """A model in Ray's object store: `files` maps relative paths to bytes; `digest` is the
    sha256 of the package manifest (which lists every file's sha256) or of the single file."""

    name: str
    source: str
    is_package: bool
    digest: str
    files: Any = field(repr=False)  # ray.ObjectRef -> dict[str, bytes]
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"model": self.source, "sha256": self.digest, "bytes": self.size,
                "shipped": "ray object store"}


def ship_model(ray: Any, path: str | os.PathLike[str]) -> ShippedModel:
    """Read `path` (a package folder, checked here first, or one .pth/.onnx file) into Ray's
    object store, so nodes without the driver's filesystem can open it."""
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
        digest = hashlib.sha256(files[MANIFEST]).hexdigest()
    elif src.is_file():
        try:
            files[src.name] = src.read_bytes()
        except OSError as err:
            raise OcrnetError(f"cannot read model {src}: {err.strerror or err}") from None
        digest = hashlib.sha256(files[src.name]).hexdigest()
    else:
        raise OcrnetError(f"no model at {src}: expected an engine package folder, a .pth "
                          "checkpoint or an .onnx file")
    size = sum(len(b) for b in files.values())
    return ShippedModel(src.name, str(path), src.is_dir(), digest, ray.put(files), size)


def materialize(model: ShippedModel, node_id: str) -> tuple[Path, bool]:
    """This node's copy of `model` (fetched from the object store once per node and checked);
    returns its path and whether this call fetched it."""
    import ray

    from ocrnet.package import MANIFEST

    root = Path(tempfile.gettempdir()) / _CACHE
    local_name = _local_name(model)
    final = root / _entry(model, node_id)
    target = final / local_name
    key = MANIFEST if model.is_package else None
    if (final / ".complete").is_file():
        return target, False
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = ray.get(model.files)
    check = files[key] if key else files[model.name]
    got = hashlib.sha256(check).hexdigest()
    if got != model.digest:
        raise PackageError(f"model {model.source} arrived on node {node_id[:12]} with sha256 "
                           f"{got[:16]}..., expected {model.digest[:16]}...; not opening it")
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        base = stage / local_name
        for rel, data in files.items():
            out = base / rel if model.is_package else base
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        (stage / ".complete").write_text(model.digest + "\n")
        try:
            os.rename(stage, final)
        except OSError:  # another actor on this node got there first: use its copy
            shutil.rmtree(stage, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return target, True


def _local_name(model: ShippedModel) -> str:
    # A single file keeps its suffix: it is how `open_model` tells a checkpoint from ONNX.
    return "package" if model.is_package else "model" + Path(model.name).suffix


def _entry(model: ShippedModel, node_id: str) -> str:
    """A node's cache entry: by content, not name (one copy however the package is called)."""
    return f"{node_id[:12]}-{model.digest[:16]}-{_local_name(model)}"


def release_model(ray: Any, model: ShippedModel) -> None:
    """Remove every live node's copy of `model` (the job is over; the next one ships again).

    One zero-CPU task pinned to each node, so it runs even while actors hold every CPU.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def remove(name: str) -> None:
        shutil.rmtree(Path(tempfile.gettempdir()) / _CACHE / name, ignore_errors=True)

    refs = [remove.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                node["NodeID"], soft=False)).remote(_entry(model, node["NodeID"]))
            for node in ray.nodes() if node.get("Alive")]
    with contextlib.suppress(Exception):  # best effort: a copy left in /tmp harms nothing
        ray.get(refs, timeout=60)
