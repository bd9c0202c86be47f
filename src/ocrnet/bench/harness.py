"""`benchmark()`: the loop that loads models, measures them interleaved and fills the report."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.bench import timing
from ocrnet.bench.end_to_end import end_to_end
from ocrnet.bench.inputs import synthetic_batch
from ocrnet.bench.memory import PeakRss
from ocrnet.bench.models import (
    LoadedModel,
    ModelSpec,
    Progress,
    check_static_shape,
    dedupe_names,
    flops_per_image,
    load_model,
)
from ocrnet.bench.report import BenchReport, BenchResult, latency_stats, set_ratios
from ocrnet.bench.settings import BenchSettings
from ocrnet.engines.base import Engine
from ocrnet.errors import DataError, OcrnetError

Flops = tuple[float | None, str | None]


def benchmark(models: Sequence[ModelSpec] | ModelSpec, settings: BenchSettings | None = None, *,
              progress: Progress | None = None, **options: Any) -> BenchReport:
    """Measure each model at each batch size, interleaved, and return the report.

    `settings` says how (see `BenchSettings`); keyword `options` are its fields, for short calls
    (`benchmark(paths, batch=[1, 8], duration=5)`) or to override some of `settings`.
    `progress` receives one-line messages. Invalid settings raise before any model is opened.
    """
    s = _settings(settings, options).with_seed()
    specs = [models] if isinstance(models, (str, os.PathLike, Engine)) or callable(models) \
        else list(models)
    if not specs:
        raise OcrnetError("no models to benchmark: give at least one package or checkpoint")
    e2e_dir = Path(s.end_to_end) if s.end_to_end is not None else None
    if e2e_dir is not None and not e2e_dir.is_dir():
        raise DataError(f"--end-to-end needs a folder of images; {e2e_dir} is not a folder")
    say: Progress = progress or (lambda _msg: None)
    report = _new_report(s)
    rng, peak = np.random.default_rng(s.seed), PeakRss()
    loaded: list[LoadedModel] = []
    try:
        for spec in specs:
            loaded.append(load_model(spec, s, say))
        dedupe_names(loaded)
        flops = {m.name: flops_per_image(m, *s.shape) for m in loaded}
        for b in s.batch:
            units = _measure(loaded, b, s, synthetic_batch(b, *s.shape, rng), peak, say)
            e2e = [end_to_end(u.model, e2e_dir, b, say) if e2e_dir else None for u in units]
            report.results += [_result(u, s, flops[u.model.name], e)
                               for u, e in zip(units, e2e, strict=True)]
    finally:
        for m in loaded:
            if m.owned:
                m.engine.close()
    set_ratios(report.results)
    n_min = min((r.iterations for r in report.results), default=0)
    if n_min < 100:
        report.warnings.append(f"only {n_min} timed calls for some rows: p99 is close to the "
                               "maximum there; use --duration or --iterations for more")
    return report


def _settings(settings: BenchSettings | None, options: dict[str, Any]) -> BenchSettings:
    if settings is None:
        return BenchSettings(**options)
    return dataclasses.replace(settings, **options) if options else settings


def _new_report(s: BenchSettings) -> BenchReport:
    """An empty report with the machine, the settings, and a warning if the machine is busy."""
    from ocrnet import __version__
    from ocrnet.machine import machine_info

    machine = machine_info()
    settings = {**s.report_json(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "ocrnet": __version__}
    report = BenchReport(machine, settings, [])
    load, cores = machine.get("load_avg_1m"), machine.get("cores_usable") or 1
    if load is not None and load > 0.5 * cores:
        report.warnings.append(f"the machine was busy at the start (1-minute load {load} on "
                               f"{cores} usable cores): expect slower, noisier numbers")
    return report


def _measure(loaded: list[LoadedModel], b: int, s: BenchSettings, x: np.ndarray, peak: PeakRss,
             say: Progress) -> list[timing.Unit]:
    """First inference and warm-up of each model, then the interleaved measurement(s)."""
    h, w = s.shape
    stop = timing.Stop(s.iterations, int((s.duration_s or 0.0) * 1e9), s.min_iterations)
    round_ns = int(s.round_s * 1e9)
    units = [timing.Unit(m, b, x) for m in loaded]
    for u in units:
        check_static_shape(u.model, b, h, w)
        timing.first_and_warmup(u, s.warmup, s.warmup_seconds)
        say(f"batch {b}: {u.model.name} first inference {u.first_ms:.1f} ms")
    say(f"batch {b}: measuring {len(units)} model(s), round-robin ...")
    timing.interleave(units, lambda u: timing.sync_block(u, stop, round_ns),
                      lambda u: stop.done(len(u.lat), u.busy_ns), peak)
    if s.streams > 1:
        say(f"batch {b}: {s.streams} requests in flight ...")
        timing.interleave(units, lambda u: timing.stream_block(u, stop, round_ns, s.streams),
                          lambda u: stop.done(len(u.s_lat) // s.streams, u.s_wall_ns), peak)
    return units


def _result(u: timing.Unit, s: BenchSettings, flops: Flops,
            e2e: dict[str, Any] | None) -> BenchResult:
    info = u.model.info
    tp = u.batch * len(u.lat) / (u.busy_ns / 1e9) if u.busy_ns else math.nan
    flop, note = flops
    s_tp = u.batch * len(u.s_lat) / (u.s_wall_ns / 1e9) if u.s_wall_ns else None
    return BenchResult(
        model=u.model.name, backend=info.backend, precision=info.precision, device=info.device,
        batch=u.batch, shape=list(s.shape), iterations=len(u.lat),
        latency_ms=latency_stats(u.lat), throughput_ips=round(tp, 4),
        gflops_per_s=round(flop * tp / 1e9, 2) if flop else None,
        gflop_per_image=round(flop / 1e9, 3) if flop else None,
        peak_rss_mb=round(u.peak_rss, 1),
        model_rss_mb=None if u.model.rss_mb is None else round(u.model.rss_mb, 1),
        gpu_peak_mb=None if u.gpu_peak is None else round(u.gpu_peak, 1),
        load_s=None if u.model.load_s is None else round(u.model.load_s, 4),
        first_inference_ms=round(u.first_ms, 3), ratio_to_first=None,
        streams=s.streams, streams_mode=u.s_mode,
        throughput_ips_streams=None if s_tp is None else round(s_tp, 4),
        latency_ms_streams=latency_stats(u.s_lat) if u.s_lat else None,
        end_to_end=e2e, notes=[note] if note else [],
        latency_samples_ms=[round(t / 1e6, 4) for t in u.lat],
    )
