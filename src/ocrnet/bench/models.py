"""The models being measured: opening them (timed, with their memory), shape checks, FLOPs."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ocrnet.bench import timing
from ocrnet.bench.memory import rss_mb
from ocrnet.bench.settings import BenchSettings
from ocrnet.engines.base import Engine, EngineInfo
from ocrnet.errors import OcrnetError, PackageError

#: A model to measure: a path (engine package dir or .pth checkpoint), an open Engine (measured,
#: not closed), or a zero-argument callable that opens one (timed as the load, closed after).
ModelSpec = str | os.PathLike[str] | Engine | Callable[[], Engine]

Progress = Callable[[str], None]


@dataclass
class LoadedModel:
    """An open engine with what opening it cost."""

    name: str
    engine: Engine
    owned: bool  # opened here, so closed here
    load_s: float | None
    rss_mb: float | None
    sync: Callable[[], None] | None  # device synchronisation inside the timed region
    cuda: bool

    @property
    def info(self) -> EngineInfo:
        return self.engine.info


def _open_path(path: Path, settings: BenchSettings) -> Engine:
    if not path.exists():
        raise PackageError(f"no model at {path}: expected an engine package directory "
                           "(with ocrnet.json), a .pth checkpoint or an .onnx file")
    if path.is_dir() and not (path / "ocrnet.json").is_file():
        raise PackageError(f"{path} is not an engine package: it has no ocrnet.json; "
                           "build one with `ocrnet build`")
    try:
        from ocrnet.engines import open_model
    except ImportError:
        raise OcrnetError("opening models needs ocrnet.engines.open_model, "
                          "which this installation lacks") from None
    # Only what was asked for: engines and test doubles take the options they know.
    opts = {"threads": settings.threads, "trust_checkpoint": settings.trust_checkpoint,
            "trust_package": settings.trust_package,
            # K in flight: engines with a throughput mode (OpenVINO) open K streams for it.
            "streams": settings.streams if settings.streams > 1 else None}
    return open_model(path, device=settings.device, **{k: v for k, v in opts.items() if v})


def _cuda_sync(info: EngineInfo) -> tuple[Callable[[], None] | None, bool]:
    """torch.cuda.synchronize for engines on a CUDA device, so timings include the device work."""
    if not info.device.startswith("cuda"):
        return None, False
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None, True  # e.g. ONNX Runtime's CUDA provider: its outputs are already on host
    return torch.cuda.synchronize, True


def load_model(spec: ModelSpec, settings: BenchSettings, progress: Progress) -> LoadedModel:
    """Open `spec` (timing it and the memory it takes) or take an open engine as it is."""
    if isinstance(spec, Engine):
        engine, owned, load_s, rss = spec, False, None, None
        name = str(spec.metadata.get("name") or type(spec).__name__)
    else:
        name = Path(spec).name if isinstance(spec, (str, os.PathLike)) else \
            getattr(spec, "__name__", type(spec).__name__)
        progress(f"loading {name} ...")
        gc.collect()
        rss0, t0 = rss_mb(), timing.now_ns()
        if isinstance(spec, (str, os.PathLike)):
            engine = _open_path(Path(spec), settings)
        else:
            engine = spec()
        load_s, rss, owned = (timing.now_ns() - t0) / 1e9, rss_mb() - rss0, True
    sync, cuda = _cuda_sync(engine.info)
    return LoadedModel(name, engine, owned, load_s, rss, sync, cuda)


def dedupe_names(models: list[LoadedModel]) -> None:
    """Rows must be told apart: the second model named `m` becomes `m#2`."""
    seen: dict[str, int] = {}
    for m in models:
        seen[m.name] = seen.get(m.name, 0) + 1
        if seen[m.name] > 1:
            m.name = f"{m.name}#{seen[m.name]}"


def check_static_shape(model: LoadedModel, batch: int, h: int, w: int) -> None:
    """Reject a batch/shape a static package cannot run, before it fails deep in a runtime."""
    shape = model.info.input_shape
    if shape is None or len(shape) != 4:
        return
    want = (batch, 3, h, w)
    # Dynamic dims are recorded as None, -1 or a name; only positive ints are fixed.
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if any(f is not None and f != x for f, x in zip(fixed, want, strict=True)):
        spec = "x".join("?" if f is None else str(f) for f in fixed)
        raise OcrnetError(
            f"{model.name} is built for input (N, C, H, W) = {spec} and cannot run batch {batch} "
            f"at {h}x{w}; pick --batch/--shape to match, or rebuild it with dynamic axes")


def flops_per_image(model: LoadedModel, h: int, w: int) -> tuple[float | None, str | None]:
    """(FLOPs per image, note) for the model's variant; None when the variant is unknown."""
    info = model.info
    if not info.variant:
        return None, "GFLOP/s unknown: the engine does not record its model variant"
    from ocrnet.flops import count_flops

    try:
        return float(count_flops(info.variant, h, w, info.num_classes or 19).flops), None
    except (OcrnetError, RuntimeError, NotImplementedError) as err:
        return None, f"FLOP count failed: {err}"
