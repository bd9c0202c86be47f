"""`ocrnet bench`: latency and throughput of engines and checkpoints, measured side by side.

One harness for every backend (the engines only run; timing lives here, docs/style.md rule 7):

* Each model is loaded once (timed), then per batch size: a first inference (timed on its own,
  it includes lazy compilation and shape specialisation), a warm-up, then measured calls.
* Several models are measured **interleaved**: round after round, each model runs a block of
  calls (`round_s` long, at least one call), so slow drift of the machine (thermal throttling, a
  neighbour's job, frequency scaling) lands on all models alike and their ratios stay fair.
  Blocks rather than single calls, because CPU runtimes keep their thread pools spinning for a
  while after a call returns, which would bill one model's idle spin to the next one.
* Each call is timed with `time.perf_counter_ns` (monotonic) around `engine.infer`, which returns
  host arrays; for CUDA torch engines `torch.cuda.synchronize()` is inside the timed region too.
* `streams > 1` adds a phase with K requests in flight: K threads each calling `infer`, or, when
  the engine has `infer_async(batch) -> concurrent.futures.Future` (the hook for native async
  requests such as OpenVINO's AsyncInferQueue or CUDA streams), K outstanding futures.
  Engines without `infer_async` must then allow concurrent `infer` calls.
* Inputs are smooth random images in 0..255 normalised with the mmseg mean/std (realistic value
  statistics, never zeros: some kernels short-cut zeros), fresh per run from a recorded seed.

`benchmark(...)` returns a `BenchReport` (JSON, terminal table, Markdown, PNG plot); the CLI and
the one-click pipeline are thin layers over it.
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.engines.base import Engine
from ocrnet.errors import DataError, OcrnetError, PackageError

#: A model to measure: a path (engine package dir or .pth checkpoint), an open Engine (measured,
#: not closed), or a zero-argument callable that opens one (timed as the load, closed after).
ModelSpec = str | os.PathLike[str] | Engine | Callable[[], Engine]

LATENCY_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "max")
SCHEMA_VERSION = 1
DEFAULT_SHAPE = (1024, 2048)  # (H, W) of a Cityscapes frame
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

Progress = Callable[[str], None]


# --- small pure helpers --------------------------------------------------------------------
def parse_shape(shape: str | Sequence[int]) -> tuple[int, int]:
    """'1024x2048' or (1024, 2048) -> (H, W); anything else is an OcrnetError."""
    if isinstance(shape, str):
        match = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", shape)
        dims = (int(match[1]), int(match[2])) if match else None
    else:
        dims = tuple(int(d) for d in shape) if len(shape) == 2 else None
    if dims is None or min(dims) < 1:
        raise OcrnetError(f"shape {shape!r} is not HEIGHTxWIDTH with positive integers, "
                          "e.g. 1024x2048 or 512x1024")
    return dims[0], dims[1]


def latency_stats(samples_ns: Sequence[int]) -> dict[str, float]:
    """min/mean/p50/p90/p95/p99/max in milliseconds (percentiles linearly interpolated)."""
    if len(samples_ns) == 0:
        return dict.fromkeys(LATENCY_KEYS, math.nan)
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    values = (ms.min(), ms.mean(), p50, p90, p95, p99, ms.max())
    return {k: round(float(v), 4) for k, v in zip(LATENCY_KEYS, values, strict=True)}


def synthetic_batch(batch: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(batch, 3, H, W) float32: smooth random images in 0..255 with fine texture, normalised.

    Low-frequency blobs (bilinearly upsampled noise) plus pixel noise give the value range and
    spatial statistics of a photo, so activations, and with them int8 saturation and any
    data-dependent kernel, behave as on real frames.
    """
    from ocrnet.data.transforms import MEAN, STD

    coarse = rng.uniform(0, 255, (batch, 3, height // 16 + 2, width // 16 + 2)).astype(np.float32)
    img = _upsample(_upsample(coarse, height, axis=2), width, axis=3)
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    np.clip(img, 0, 255, out=img)
    img -= np.asarray(MEAN, np.float32).reshape(1, 3, 1, 1)
    img /= np.asarray(STD, np.float32).reshape(1, 3, 1, 1)
    return img


def _upsample(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear interpolation of `a` along `axis` to `size` samples (align_corners=True)."""
    n = a.shape[axis]
    pos = np.linspace(0, n - 1, size, dtype=np.float32)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    shape = [1] * a.ndim
    shape[axis] = size
    w = (pos - i0).astype(a.dtype).reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - w) + np.take(a, i1, axis=axis) * w


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class _PeakRss:
    """Peak resident memory over a stretch of code.

    Linux keeps the process's high-water mark (VmHWM) and resets it when "5" is written to
    /proc/self/clear_refs, so the true peak inside an inference is caught, not just the RSS
    after it. Elsewhere it falls back to sampling RSS at the end.
    """

    def __init__(self) -> None:
        self.supported = Path("/proc/self/clear_refs").exists()

    def reset(self) -> None:
        if self.supported:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self.supported = False

    def read_mb(self) -> float:
        if self.supported:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return _rss_mb()


# --- results -------------------------------------------------------------------------------
@dataclass
class BenchResult:
    """One model at one batch size. `to_json` gives the stable schema (see README)."""

    model: str
    backend: str
    precision: str
    device: str
    batch: int
    shape: list[int]  # [H, W]
    iterations: int
    latency_ms: dict[str, float]
    throughput_ips: float
    gflops_per_s: float | None
    gflop_per_image: float | None
    peak_rss_mb: float  # process peak while this model ran (other loaded models included)
    # RSS growth and seconds to open the model; the first model of a backend also pays for
    # importing its runtime (a real cold-start cost, but not the model's own size).
    model_rss_mb: float | None
    gpu_peak_mb: float | None
    load_s: float | None
    first_inference_ms: float
    ratio_to_first: float | None  # throughput / the first model's at this batch (>1: faster)
    streams: int = 1
    streams_mode: str | None = None  # "threads" or "async"
    throughput_ips_streams: float | None = None
    latency_ms_streams: dict[str, float] | None = None
    ratio_to_first_streams: float | None = None
    end_to_end: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    latency_samples_ms: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchReport:
    """Everything one benchmark run measured, with the machine and settings it ran under."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    results: list[BenchResult]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "machine": self.machine,
            "settings": self.settings,
            "warnings": self.warnings,
            "results": [r.to_json() for r in self.results],
        }

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        return _write(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchReport:
        if data.get("schema") != SCHEMA_VERSION:
            raise OcrnetError(f"benchmark JSON schema {data.get('schema')!r} is not "
                              f"{SCHEMA_VERSION}: written by another ocrnet version")
        return cls(machine=data["machine"], settings=data["settings"],
                   results=[BenchResult(**r) for r in data["results"]],
                   warnings=list(data.get("warnings", [])))

    def _rows(self) -> tuple[list[str], list[list[str]]]:
        streams = any(r.throughput_ips_streams for r in self.results)
        head = ["model", "backend", "prec", "batch", "shape", "n", "mean ms", "p50", "p90",
                "p95", "p99", "img/s", "GFLOP/s", "RSS MB", "load s", "1st ms", "ratio"]
        if streams:
            head += ["img/s@K", "ratio@K"]
        rows = []
        for r in self.results:
            lat = r.latency_ms
            row = [r.model, r.backend, r.precision, str(r.batch), "x".join(map(str, r.shape)),
                   str(r.iterations), *(_num(lat[k]) for k in ("mean", "p50", "p90", "p95",
                                                           "p99")),
                   _num(r.throughput_ips), _num(r.gflops_per_s), _num(r.peak_rss_mb, 0),
                   _num(r.load_s, 2), _num(r.first_inference_ms), _ratio(r.ratio_to_first)]
            if streams:
                row += [_num(r.throughput_ips_streams), _ratio(r.ratio_to_first_streams)]
            rows.append(row)
        return head, rows

    def _e2e_rows(self) -> tuple[list[str], list[list[str]]]:
        head = ["model", "batch", "images", "shape", "img/s e2e", "img/s engine", "decode",
                "preprocess", "input wait", "infer", "postprocess", "encode", "wall ms/img"]
        rows = []
        for r in self.results:
            e = r.end_to_end
            if not e:
                continue
            ms = e["per_image_ms"]
            rows.append([r.model, str(r.batch), str(e["images"]), ",".join(e["input_shapes"]),
                         _num(e["throughput_ips"]),
                         _num(r.throughput_ips), *(_num(ms[k]) for k in E2E_STAGES),
                         _num(e["wall_s"] * 1e3 / max(e["images"], 1))])
        return head, rows

    def table(self) -> str:
        """The compact terminal table: one row per model x batch."""
        text = _text_table(*self._rows())
        head, rows = self._e2e_rows()
        if rows:
            text += "\n\nend-to-end (files -> label PNGs; stage columns in ms per image)\n"
            text += _text_table(head, rows)
        return text

    def markdown(self) -> str:
        """The same tables as Markdown, with the machine line above them."""
        m = self.machine
        lines = [f"Machine: {m.get('cpu')} ({m.get('cores_usable')} usable cores"
                 f"{', ' + m['gpu']['name'] if m.get('gpu') else ''}); "
                 f"flags: {', '.join(m.get('cpu_flags') or []) or '-'}", ""]
        lines += _md_table(*self._rows())
        head, rows = self._e2e_rows()
        if rows:
            lines += ["", "End-to-end (files → label PNGs; stage columns in ms per image)", ""]
            lines += _md_table(head, rows)
        lines += [f"\n> {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"

    def save_markdown(self, path: str | os.PathLike[str]) -> Path:
        return _write(path, self.markdown())

    def save_plot(self, path: str | os.PathLike[str]) -> Path:
        """PNG: latency distribution per model x batch, and throughput against batch size."""
        import matplotlib

        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt

        fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(13, 4.8))
        data = [r.latency_samples_ms or [math.nan] for r in self.results]
        labels = [f"{r.model}\nbatch {r.batch}" for r in self.results]
        ax_lat.boxplot(data, whis=(1, 99), showfliers=True, showmeans=True)
        ax_lat.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=20)
        ax_lat.set_ylabel("latency per call (ms)")
        ax_lat.set_title("latency (box: p25-p75, whiskers: p1-p99, ▲ mean)")
        for name in dict.fromkeys(r.model for r in self.results):
            rs = [r for r in self.results if r.model == name]
            line, = ax_tp.plot([r.batch for r in rs], [r.throughput_ips for r in rs], "o-",
                               label=name)
            if any(r.throughput_ips_streams for r in rs):
                ax_tp.plot([r.batch for r in rs], [r.throughput_ips_streams for r in rs], "s--",
                           color=line.get_color(), label=f"{name} ({rs[0].streams} streams)")
        ax_tp.set_xscale("log", base=2)
        batches = sorted({r.batch for r in self.results})
        ax_tp.set_xticks(batches, [str(b) for b in batches])
        ax_tp.minorticks_off()
        ax_tp.set_xlabel("batch size")
        ax_tp.set_ylabel("throughput (images/s)")
        ax_tp.set_title("throughput vs batch")
        ax_tp.legend(fontsize=7)
        ax_tp.grid(alpha=0.3)
        shape = "x".join(map(str, self.settings.get("shape") or []))
        fig.suptitle(f"{self.machine.get('cpu')} — input {shape}",
                     fontsize=9)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


E2E_STAGES = ("decode", "preprocess", "input_wait", "infer", "postprocess", "encode")


def _num(v: float | None, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.{digits}f}" if abs(v) >= 0.1 or v == 0 else f"{v:.3g}"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _text_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]
    # Names left, numbers right: the columns line up by magnitude.
    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |",
            "|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _write(path: str | os.PathLike[str], text: str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


# --- loading -------------------------------------------------------------------------------
@dataclass
class _Model:
    name: str
    engine: Engine
    owned: bool
    load_s: float | None
    rss_mb: float | None
    sync: Callable[[], None] | None
    cuda: bool
    source: Path | None = None  # the path it was opened from

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.engine.metadata or {})


def _open_path(path: Path, device: str, threads: int | None) -> Engine:
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
    opts = {"threads": threads} if threads else {}
    return open_model(path, device=device, **opts)


def _cuda_sync(meta: dict[str, Any]) -> tuple[Callable[[], None] | None, bool]:
    """torch.cuda.synchronize for engines on a CUDA device, so timings include the device work."""
    if not str(meta.get("device", "cpu")).startswith("cuda"):
        return None, False
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None, True  # e.g. ONNX Runtime's CUDA provider: its outputs are already on host
    return torch.cuda.synchronize, True


def _load(spec: ModelSpec, device: str, threads: int | None, progress: Progress) -> _Model:
    if isinstance(spec, Engine):
        engine, owned, load_s, rss = spec, False, None, None
        name = str(spec.metadata.get("name") or type(spec).__name__)
    else:
        name = Path(spec).name if isinstance(spec, (str, os.PathLike)) else \
            getattr(spec, "__name__", type(spec).__name__)
        progress(f"loading {name} ...")
        gc.collect()
        rss0, t0 = _rss_mb(), time.perf_counter()
        if isinstance(spec, (str, os.PathLike)):
            engine = _open_path(Path(spec), device, threads)
        else:
            engine = spec()
        load_s, rss, owned = time.perf_counter() - t0, _rss_mb() - rss0, True
    sync, cuda = _cuda_sync(dict(engine.metadata or {}))
    source = Path(spec) if isinstance(spec, (str, os.PathLike)) else None
    return _Model(name, engine, owned, load_s, rss, sync, cuda, source)


def _check_static_shape(model: _Model, batch: int, h: int, w: int) -> None:
    """Reject a batch/shape a static package cannot run, before it fails deep in a runtime."""
    shape = model.meta.get("input_shape")
    if not isinstance(shape, (list, tuple)) or len(shape) != 4:
        return
    want = (batch, 3, h, w)
    # Dynamic dims are recorded as None, -1 or a name; only positive ints are fixed.
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if any(f is not None and f != x for f, x in zip(fixed, want, strict=True)):
        spec = "x".join("?" if f is None else str(f) for f in fixed)
        raise OcrnetError(
            f"{model.name} is built for input (N, C, H, W) = {spec} and cannot run batch {batch} "
            f"at {h}x{w}; pick --batch/--shape to match, or rebuild it with dynamic axes")


# --- measuring -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Stop:
    iterations: int | None
    duration_ns: int
    min_iterations: int

    def done(self, count: int, elapsed_ns: int) -> bool:
        if self.iterations is not None:
            return count >= self.iterations
        return count >= self.min_iterations and elapsed_ns >= self.duration_ns


@dataclass
class _Unit:
    """One model at one batch size: its input and everything measured on it."""

    model: _Model
    batch: int
    x: np.ndarray
    first_ms: float = math.nan
    lat: list[int] = field(default_factory=list)
    busy_ns: int = 0
    s_lat: list[int] = field(default_factory=list)
    s_wall_ns: int = 0
    s_mode: str | None = None
    peak_rss: float = 0.0
    gpu_peak: float | None = None

    def call(self) -> int:
        """One timed inference, device synchronised; returns its duration in ns."""
        t0 = time.perf_counter_ns()
        self.model.engine.infer(self.x)
        if self.model.sync is not None:
            self.model.sync()
        return time.perf_counter_ns() - t0


class _Watch:
    """Peak host (and CUDA) memory over one block of calls, attributed to its unit."""

    def __init__(self, unit: _Unit, peak: _PeakRss) -> None:
        self.unit, self.peak = unit, peak
        self.torch = sys.modules.get("torch") if unit.model.cuda else None
        if self.torch is not None and not self.torch.cuda.is_available():
            self.torch = None

    def __enter__(self) -> _Watch:
        self.peak.reset()
        if self.torch is not None:
            self.torch.cuda.reset_peak_memory_stats()
        gc.disable()  # a collection inside a timed call is the harness's noise, not the model's
        return self

    def __exit__(self, *exc: object) -> None:
        gc.enable()
        self.unit.peak_rss = max(self.unit.peak_rss, self.peak.read_mb())
        if self.torch is not None:
            mb = self.torch.cuda.max_memory_allocated() / 2**20
            self.unit.gpu_peak = max(self.unit.gpu_peak or 0.0, mb)


def _first_and_warmup(u: _Unit, h: int, w: int, warmup: int | None, warmup_s: float) -> None:
    _check_static_shape(u.model, u.batch, h, w)
    try:
        u.first_ms = u.call() / 1e6
    except OcrnetError:
        raise
    except Exception as err:  # a runtime's own shape/type error: say which model and input
        raise OcrnetError(f"{u.model.name} failed on input {tuple(u.x.shape)}: "
                          f"{type(err).__name__}: {err}") from err
    start, n = time.perf_counter_ns(), 0
    while (n < warmup) if warmup is not None else \
            (time.perf_counter_ns() - start < warmup_s * 1e9):
        u.call()
        n += 1


def _sync_block(u: _Unit, stop: _Stop, round_ns: int) -> None:
    start = time.perf_counter_ns()
    while True:
        dt = u.call()
        u.lat.append(dt)
        u.busy_ns += dt
        if stop.done(len(u.lat), u.busy_ns) or time.perf_counter_ns() - start >= round_ns:
            return


def _stream_block(u: _Unit, stop: _Stop, round_ns: int, streams: int) -> None:
    """K requests in flight for about `round_ns`; throughput = images / block wall time."""
    budget = stop.iterations * streams - len(u.s_lat) if stop.iterations is not None else None
    infer_async = getattr(u.model.engine, "infer_async", None)
    start = time.perf_counter_ns()
    if callable(infer_async):
        u.s_mode = "async"
        _async_block(u, infer_async, budget, round_ns, streams, start)
    else:
        u.s_mode = "threads"
        _thread_block(u, budget, round_ns, streams, start)
    u.s_wall_ns += time.perf_counter_ns() - start


def _thread_block(u: _Unit, budget: int | None, round_ns: int, streams: int, start: int) -> None:
    lock, issued, errors = threading.Lock(), [0], []

    def worker() -> None:
        while True:
            with lock:
                # Every stream gets a request, however short the round.
                if (budget is not None and issued[0] >= budget) or \
                        (issued[0] >= streams and time.perf_counter_ns() - start >= round_ns):
                    return
                issued[0] += 1
            try:
                u.s_lat.append(u.call())  # list.append is atomic under the GIL
            except Exception as err:  # re-raised in the caller's thread below
                errors.append(err)
                return

    threads = [threading.Thread(target=worker, name=f"ocrnet-bench-{i}") for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _async_block(u: _Unit, infer_async: Callable[[np.ndarray], Future], budget: int | None,
                 round_ns: int, streams: int, start: int) -> None:
    issued, n0 = 0, len(u.s_lat)
    inflight: set[Future] = set()

    def submit() -> None:
        t0 = time.perf_counter_ns()
        fut = infer_async(u.x)
        # Completion is stamped in the completing thread: no head-of-line bias from waiting.
        fut.add_done_callback(lambda _f, t0=t0: u.s_lat.append(time.perf_counter_ns() - t0))
        inflight.add(fut)

    def may_issue() -> bool:
        if budget is not None and issued >= budget:
            return False
        return issued < streams or time.perf_counter_ns() - start < round_ns

    while may_issue() and len(inflight) < streams:
        submit()
        issued += 1
    while inflight:
        done, _ = wait(inflight, return_when=FIRST_COMPLETED)
        for fut in done:
            inflight.discard(fut)
            fut.result()  # raise the engine's error here
            if may_issue():
                submit()
                issued += 1
    # A future counts as done just before its callbacks run: let the last stamps land.
    deadline = time.perf_counter_ns() + 10**9
    while len(u.s_lat) - n0 < issued and time.perf_counter_ns() < deadline:
        time.sleep(0)
    if u.model.sync is not None:
        u.model.sync()


def _interleave(units: list[_Unit], block: Callable[[_Unit], None],
                done: Callable[[_Unit], bool], peak: _PeakRss) -> None:
    """Round-robin blocks over the units until each is done."""
    pending = list(units)
    gc.collect()
    while pending:
        for u in pending:
            with _Watch(u, peak):
                block(u)
        pending = [u for u in pending if not done(u)]


# --- end to end ----------------------------------------------------------------------------
def _end_to_end(model: _Model, directory: Path, batch: int, progress: Progress) -> dict[str, Any]:
    """Files -> label PNGs through the parallel loader, with the time spent in each stage.

    decode/preprocess are single-thread costs from a serial pass (which also warms the page
    cache); the pipelined pass then shows how much of them the loader hides: `input_wait` is
    what the inference loop still waited for input. Postprocess is the nearest resize of labels
    back to the original size; encode is PNG encoding plus the write. The network runs at the
    images' own preprocessed shape (mmseg's keep-ratio resize to fit 2048x1024, which upscales
    small images), not at `shape`: `input_shapes` records it.
    """
    import tempfile

    import cv2

    from ocrnet.data.cityscapes import Sample
    from ocrnet.data.loader import Loader
    from ocrnet.data.transforms import preprocess, read_image, resize_labels

    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {directory}")
    progress(f"end-to-end {model.name}, batch {batch}: {len(files)} images ...")
    t_dec = t_pre = 0
    first: list[np.ndarray] = []
    shapes: dict[str, None] = {}  # the network's input shapes after mmseg's keep-ratio resize
    for p in files:
        t0 = time.perf_counter_ns()
        img = read_image(p)
        t1 = time.perf_counter_ns()
        x = preprocess(img)
        t_dec, t_pre = t_dec + t1 - t0, t_pre + time.perf_counter_ns() - t1
        shapes[f"{x.shape[1]}x{x.shape[2]}"] = None
        if len(first) < batch and (not first or first[0].shape == x.shape):
            first.append(x)
    model.engine.infer(np.stack(first))  # untimed: compiles for the images' own shape
    samples = [Sample(stem=p.stem, city=p.parent.name, image=p) for p in files]
    acc = dict.fromkeys(("input_wait", "infer", "postprocess", "encode"), 0)
    with tempfile.TemporaryDirectory(prefix="ocrnet-bench-") as tmp:
        start = mark = time.perf_counter_ns()
        for b in Loader(samples, batch_size=batch, labels=False):
            t0 = time.perf_counter_ns()
            acc["input_wait"] += t0 - mark
            labels = model.engine.infer(b.images).labels
            if model.sync is not None:
                model.sync()
            t1 = time.perf_counter_ns()
            outs = [resize_labels(lab, size) for lab, size in zip(labels, b.sizes, strict=True)]
            t2 = time.perf_counter_ns()
            for s, out in zip(b.samples, outs, strict=True):
                cv2.imwrite(str(Path(tmp) / f"{s.stem}.png"), out)
            mark = time.perf_counter_ns()
            acc["infer"] += t1 - t0
            acc["postprocess"] += t2 - t1
            acc["encode"] += mark - t2
        wall = time.perf_counter_ns() - start
    n = len(files)
    per = {"decode": t_dec, "preprocess": t_pre, **acc}
    return {
        "images": n,
        "input_shapes": list(shapes),
        "wall_s": round(wall / 1e9, 4),
        "throughput_ips": round(n / (wall / 1e9), 4),
        "per_image_ms": {k: round(per[k] / n / 1e6, 3) for k in E2E_STAGES},
    }


# --- the API -------------------------------------------------------------------------------
def benchmark(
    models: Sequence[ModelSpec] | ModelSpec,
    *,
    batch: int | Sequence[int] = 1,
    shape: str | Sequence[int] = DEFAULT_SHAPE,
    warmup: int | None = None,
    warmup_s: float | None = None,
    iterations: int | None = None,
    duration: float | None = None,
    threads: int | None = None,
    streams: int = 1,
    device: str = "cpu",
    end_to_end: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    round_s: float = 0.5,
    min_iterations: int = 5,
    progress: Progress | None = None,
) -> BenchReport:
    """Measure each model at each batch size, interleaved, and return the report.

    `warmup` (calls) or `warmup_s` (seconds, default 1) after the first inference; `iterations`
    (timed calls per model x batch; per stream with `streams`) or `duration` (seconds of timed
    calls, default 10, at least `min_iterations` calls). `threads` is passed to the engines
    opened from paths; `round_s` is the length of one model's block in the round-robin.
    `end_to_end` is a folder of images to run through the whole files -> PNGs path as well.
    """
    say: Progress = progress or (lambda _msg: None)
    specs = [models] if isinstance(models, (str, os.PathLike, Engine)) or callable(models) \
        else list(models)
    batches = [batch] if isinstance(batch, int) else list(batch)
    h, w = parse_shape(shape)
    if not specs:
        raise OcrnetError("no models to benchmark: give at least one package or checkpoint")
    if warmup is not None and warmup_s is not None:
        raise OcrnetError("give --warmup (calls) or --warmup-s (seconds), not both")
    if iterations is not None and duration is not None:
        raise OcrnetError("give --iterations or --duration, not both")
    for name, value in (("batch", min(batches, default=0)), ("streams", streams),
                        ("threads", threads or 1), ("iterations", iterations or 1)):
        if value < 1:
            raise OcrnetError(f"{name} must be a positive integer, got {value}")
    if (warmup or 0) < 0 or (warmup_s or 0) < 0:
        raise OcrnetError("warm-up must be zero or more calls/seconds")
    if duration is not None and duration <= 0:
        raise OcrnetError(f"duration must be positive seconds, got {duration}")
    e2e_dir = Path(end_to_end) if end_to_end is not None else None
    if e2e_dir is not None and not e2e_dir.is_dir():
        raise DataError(f"--end-to-end needs a folder of images; {e2e_dir} is not a folder")

    from ocrnet import __version__
    from ocrnet.machine import machine_info

    seed = time.time_ns() % 2**32 if seed is None else seed
    stop = _Stop(iterations, int((duration or 10.0) * 1e9), min_iterations)
    round_ns = int(round_s * 1e9)
    warm_s = 1.0 if warmup is None and warmup_s is None else (warmup_s or 0.0)
    machine = machine_info()
    settings = {
        "shape": [h, w], "batches": batches, "warmup": warmup, "warmup_s": warm_s,
        "iterations": iterations, "duration_s": None if iterations else (duration or 10.0),
        "min_iterations": min_iterations, "threads": threads, "streams": streams,
        "device": device, "round_s": round_s, "seed": seed, "end_to_end": str(e2e_dir or ""),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ocrnet": __version__,
    }
    report = BenchReport(machine, settings, [])
    load, cores = machine.get("load_avg_1m"), machine.get("cores_usable") or 1
    if load is not None and load > 0.5 * cores:
        report.warnings.append(f"the machine was busy at the start (1-minute load {load} on "
                               f"{cores} usable cores): expect slower, noisier numbers")

    rng = np.random.default_rng(seed)
    peak = _PeakRss()
    loaded: list[_Model] = []
    try:
        for spec in specs:
            loaded.append(_load(spec, device, threads, say))
        _dedupe_names(loaded)
        flops = {m.name: _flops_per_image(m, h, w) for m in loaded}
        for b in batches:
            x = synthetic_batch(b, h, w, rng)
            units = [_Unit(m, b, x) for m in loaded]
            for u in units:
                _first_and_warmup(u, h, w, warmup, warm_s)
                say(f"batch {b}: {u.model.name} first inference {u.first_ms:.1f} ms")
            say(f"batch {b}: measuring {len(units)} model(s), round-robin ...")
            _interleave(units, lambda u: _sync_block(u, stop, round_ns),
                        lambda u: stop.done(len(u.lat), u.busy_ns), peak)
            if streams > 1:
                say(f"batch {b}: {streams} requests in flight ...")
                _interleave(units, lambda u: _stream_block(u, stop, round_ns, streams),
                            lambda u: stop.done(len(u.s_lat) // streams, u.s_wall_ns), peak)
            e2e = [_end_to_end(u.model, e2e_dir, b, say) if e2e_dir else None for u in units]
            report.results += [_result(u, h, w, streams, flops[u.model.name], e)
                               for u, e in zip(units, e2e, strict=True)]
    finally:
        for m in loaded:
            if m.owned:
                m.engine.close()
    _ratios(report.results)
    n_min = min((r.iterations for r in report.results), default=0)
    if n_min < 100:
        report.warnings.append(f"only {n_min} timed calls for some rows: p99 is close to the "
                               "maximum there; use --duration or --iterations for more")
    return report


def merge_reports(reports: Sequence[BenchReport]) -> BenchReport:
    """One report from separate runs (e.g. one process per model), ratios to the first model.

    The runs were not interleaved, so machine drift between them is not shared out: the
    settings say so, and the machine is the first run's.
    """
    if not reports:
        raise OcrnetError("no benchmark reports to merge")
    settings = dict(reports[0].settings, isolated=True,
                    note="one process per model, run one after another (not interleaved)")
    merged = BenchReport(machine=reports[0].machine, settings=settings,
                         results=[r for rep in reports for r in rep.results],
                         warnings=sorted({w for rep in reports for w in rep.warnings}))
    _ratios(merged.results)
    return merged


def _dedupe_names(models: list[_Model]) -> None:
    seen: dict[str, int] = {}
    for m in models:
        seen[m.name] = seen.get(m.name, 0) + 1
        if seen[m.name] > 1:
            m.name = f"{m.name}#{seen[m.name]}"


def _variant_of(m: _Model) -> tuple[str | None, int]:
    """(variant, classes) from the engine's metadata, else from the checkpoint it came from."""
    meta = m.meta
    for d in (meta, meta.get("model"), meta.get("source")):
        if isinstance(d, dict) and d.get("variant"):
            classes = d.get("classes") or meta.get("classes")
            n = d.get("num_classes") or meta.get("num_classes") or (len(classes) if classes else 19)
            return str(d["variant"]), int(n)
    if m.source is not None and m.source.suffix in (".pth", ".pt"):
        from ocrnet.model import (
            detect_variant,
            extract_state_dict,
            num_classes_of,
            read_checkpoint,
        )

        try:
            state = extract_state_dict(read_checkpoint(m.source))
            return detect_variant(state), num_classes_of(state)
        except OcrnetError:  # e.g. needs --trust-checkpoint: the count is optional
            pass
    return None, 19


def _flops_per_image(m: _Model, h: int, w: int) -> tuple[float | None, str | None]:
    """(FLOPs per image, note) for the model's variant; None when the variant is unknown."""
    variant, num_classes = _variant_of(m)
    if not variant:
        return None, "GFLOP/s unknown: the engine does not record its model variant"
    from ocrnet.flops import count_flops

    try:
        return float(count_flops(variant, h, w, num_classes).flops), None
    except (OcrnetError, RuntimeError, NotImplementedError) as err:
        return None, f"FLOP count failed: {err}"


def _result(u: _Unit, h: int, w: int, streams: int,
            flops: tuple[float | None, str | None], e2e: dict[str, Any] | None) -> BenchResult:
    meta = u.model.meta
    lat = latency_stats(u.lat)
    tp = u.batch * len(u.lat) / (u.busy_ns / 1e9) if u.busy_ns else math.nan
    flop, note = flops
    s_tp = u.batch * len(u.s_lat) / (u.s_wall_ns / 1e9) if u.s_wall_ns else None
    return BenchResult(
        model=u.model.name,
        backend=str(meta.get("backend", "?")),
        precision=str(meta.get("precision", "?")),
        device=str(meta.get("device", "cpu")),
        batch=u.batch,
        shape=[h, w],
        iterations=len(u.lat),
        latency_ms=lat,
        throughput_ips=round(tp, 4),
        gflops_per_s=round(flop * tp / 1e9, 2) if flop else None,
        gflop_per_image=round(flop / 1e9, 3) if flop else None,
        peak_rss_mb=round(u.peak_rss, 1),
        model_rss_mb=None if u.model.rss_mb is None else round(u.model.rss_mb, 1),
        gpu_peak_mb=None if u.gpu_peak is None else round(u.gpu_peak, 1),
        load_s=None if u.model.load_s is None else round(u.model.load_s, 4),
        first_inference_ms=round(u.first_ms, 3),
        ratio_to_first=None,
        streams=streams,
        streams_mode=u.s_mode,
        throughput_ips_streams=None if s_tp is None else round(s_tp, 4),
        latency_ms_streams=latency_stats(u.s_lat) if u.s_lat else None,
        end_to_end=e2e,
        notes=[note] if note else [],
        latency_samples_ms=[round(t / 1e6, 4) for t in u.lat],
    )


def _ratios(results: list[BenchResult]) -> None:
    """Throughput relative to the first model at the same batch (>1: faster than the first)."""
    first: dict[int, BenchResult] = {}
    for r in results:
        base = first.setdefault(r.batch, r)
        r.ratio_to_first = round(r.throughput_ips / base.throughput_ips, 4) \
            if base.throughput_ips else None
        if r.throughput_ips_streams and base.throughput_ips_streams:
            r.ratio_to_first_streams = round(r.throughput_ips_streams /
                                             base.throughput_ips_streams, 4)
        if r.end_to_end and base.end_to_end and base.end_to_end["throughput_ips"]:
            r.end_to_end["ratio_to_first"] = round(r.end_to_end["throughput_ips"] /
                                                   base.end_to_end["throughput_ips"], 4)
