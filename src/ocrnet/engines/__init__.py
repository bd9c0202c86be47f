"""Engines: one module per backend, discovered by name, and `open_model` for any model path.

Adding a backend is adding one file `ocrnet/engines/<name>.py` with one `Engine` subclass whose
`backend` is `<name>`: `available_backends`, `get_backend`, `open_model` and `ocrnet build` pick
it up without another table to edit.
"""

from __future__ import annotations

import difflib
import importlib
import os
import pkgutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ocrnet.engines.base import BuildOutput, BuildRequest, Engine, InferResult
from ocrnet.errors import OcrnetError, PackageError

__all__ = [
    "BuildOutput",
    "BuildRequest",
    "Engine",
    "InferResult",
    "available_backends",
    "get_backend",
    "open_model",
    "opened_engine",
    "stream_count",
]

_NOT_BACKENDS = {"base"}


def available_backends() -> list[str]:
    """Names of the backend modules shipped in `ocrnet.engines` (installed or not)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name not in _NOT_BACKENDS)


def get_backend(name: str) -> type[Engine]:
    """The `Engine` class of backend `name`; unknown names list the valid ones."""
    valid = available_backends()
    if name not in valid:
        hint = difflib.get_close_matches(str(name), valid, n=1)
        maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise OcrnetError(f"unknown backend {name!r}{maybe}; valid: {', '.join(valid)}")
    module = importlib.import_module(f"{__name__}.{name}")
    found = [obj for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, Engine) and obj is not Engine
             and obj.__module__ == module.__name__]
    if len(found) != 1:  # a packaging bug, not a user error
        raise RuntimeError(f"{module.__name__} must define exactly one Engine subclass, "
                           f"found {[c.__name__ for c in found]}")
    return found[0]


def open_model(path: str | os.PathLike[str], device: str = "cpu", *,
               trust_checkpoint: bool = False, trust_package: bool = False,
               **opts: Any) -> Engine:
    """Open any model path as an `Engine`.

    * a `.pth`/`.pt` checkpoint -> PyTorch eager (variant detected from the weights);
      `opts`: `precision` (fp32/bf16/fp16), `threads`. `trust_checkpoint` allows full
      unpickling (it runs code from the file).
    * an `.onnx` file -> ONNX Runtime, as the graph is; `opts`: `threads`.
    * an engine package directory -> its backend's engine, after checking the manifest,
      format version, backend availability and every file's sha256. Packages of a backend
      whose files hold native code (`Engine.native_code`, e.g. AOTInductor) open only with
      `trust_package`, since loading them runs that code.
    """
    from ocrnet.package import read_package

    path = Path(path)
    if path.is_dir():
        package = read_package(path)
        if package.backend not in available_backends():
            raise PackageError(
                f"package {path} is for backend {package.backend!r}, which this ocrnet does not "
                f"have; valid: {', '.join(available_backends())}")
        cls = get_backend(package.backend)
        cls.require()
        cls.check_device(device)
        if cls.native_code:
            opts["trust"] = trust_package
        return cls.open(package, device=device, **opts)
    if not path.exists():
        raise OcrnetError(f"no model at {path}: expected a .pth checkpoint, an .onnx file or an "
                          "engine package directory")
    if path.suffix == ".onnx":
        cls = get_backend("onnxruntime")
        cls.require()
        cls.check_device(device)
        return cls.open_onnx(path, device=device, **opts)  # type: ignore[attr-defined]
    cls = get_backend("torch")
    cls.check_device(device)
    return cls.from_checkpoint(path, device=device, trust_checkpoint=trust_checkpoint,
                               **opts)  # type: ignore[attr-defined]


@contextmanager
def opened_engine(model: Engine | str | os.PathLike[str], *, device: str,
                  trust_checkpoint: bool, trust_package: bool,
                  threads: int | None, streams: int = 1) -> Iterator[tuple[Engine, str]]:
    """Yield `(engine, name)`. An open `Engine` is used as it is and left open (its
    `display_name` names it); a path is opened with `ocrnet.engines.open_model` on `device`
    (`threads` inference threads when given, `streams` requests at once where more than 1:
    see `stream_count`) and closed on leaving, also on an error."""
    if isinstance(model, Engine):
        yield model, model.display_name
        return
    opts: dict[str, Any] = {"threads": threads} if threads else {}
    if streams > 1:
        opts["streams"] = streams
    engine = open_model(model, device=device, trust_checkpoint=trust_checkpoint,
                        trust_package=trust_package, **opts)
    try:
        yield engine, str(model)
    finally:
        engine.close()


def stream_count(model: Engine | str | os.PathLike[str], streams: int | None,
                 threads: int | None = None) -> int:
    """How many images an in-process job keeps in flight through `model`: `streams` where
    given; else 2 where the model is a package of a backend with a throughput mode
    (`Engine.throughput_streams`: OpenVINO) and at least 2 cores (or `threads`) run it, which
    keeps both cores busy through the layers one request runs on one core; else 1. An open
    engine keeps the streams it was opened with. Explicit streams on a backend without a
    throughput mode are refused in one line."""
    if isinstance(model, Engine):
        return int(model.metadata.get("streams") or 1)
    backend = _package_backend(Path(model))
    supported = backend is not None and backend in available_backends() and \
        get_backend(backend).throughput_streams
    if streams is not None:
        if streams > 1 and not supported:
            raise OcrnetError(f"--streams {streams}: {model} runs one request at a time (no "
                              "throughput mode; OpenVINO packages have one); leave --streams out")
        return streams
    from ocrnet.machine import usable_cores

    return 2 if supported and (threads or usable_cores()) >= 2 else 1


def _package_backend(path: Path) -> str | None:
    """The backend a package folder's manifest names (read, not verified: `open_model`
    verifies it), None for anything else."""
    import json

    from ocrnet.package import MANIFEST

    try:
        backend = json.loads((path / MANIFEST).read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return backend if isinstance(backend, str) else None
