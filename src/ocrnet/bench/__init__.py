"""`ocrnet bench`: latency and throughput of engines and checkpoints, measured side by side.

One harness for every backend (the engines only run; timing lives here, docs/style.md rule 7):

* Each model is loaded once (timed), then per batch size: a first inference (timed on its own,
  it includes lazy compilation and shape specialisation), a warm-up, then measured calls.
* Several models are measured **interleaved**: round after round, each model runs a block of
  calls (`round_s` long, at least one call), so slow drift of the machine lands on all models
  alike and their ratios stay fair.
* `streams > 1` adds a phase with K requests in flight (threads, or the engine's `infer_async`).
* Inputs are smooth random images normalised with the mmseg mean/std, from a recorded seed.

The rooms, after Polygraphy's comparator (the loop apart from its result types):

* `settings`: `BenchSettings`, every knob validated once, and the defaults (imports nothing heavy);
* `harness`: `benchmark(models, settings)`, the loop;
* `timing`: the one clock (`now_ns`), blocks of calls, K in flight, round-robin;
* `memory`: RSS, its true peak per block, CUDA's peak;
* `models`: opening models (timed), static-shape checks, FLOPs from `Engine.info`;
* `inputs`: the synthetic images; `end_to_end`: files -> label PNGs per stage;
* `report`: `BenchResult`/`BenchReport` (JSON schema, tables, plot), merging and ratios;
* `isolate`: one process per model (`benchmark_isolated`), merged into one report.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ocrnet.shapes import Size, parse_input_shape

if TYPE_CHECKING:
    from ocrnet.bench.harness import benchmark
    from ocrnet.bench.inputs import synthetic_batch
    from ocrnet.bench.models import ModelSpec, Progress
    from ocrnet.bench.report import (
        E2E_STAGES,
        LATENCY_KEYS,
        SCHEMA_VERSION,
        BenchReport,
        BenchResult,
        latency_stats,
        merge_reports,
    )
    from ocrnet.bench.settings import BenchSettings

# Imported on first use (PEP 562), so `ocrnet.bench.settings` loads without numpy or the
# engines: the CLI reads its defaults from there while building `--help`.
_EXPORTS = {
    "benchmark": "harness", "synthetic_batch": "inputs", "ModelSpec": "models",
    "Progress": "models", "E2E_STAGES": "report", "LATENCY_KEYS": "report",
    "SCHEMA_VERSION": "report", "BenchReport": "report", "BenchResult": "report",
    "latency_stats": "report", "merge_reports": "report", "BenchSettings": "settings",
}

__all__ = [
    "E2E_STAGES",
    "LATENCY_KEYS",
    "SCHEMA_VERSION",
    "BenchReport",
    "BenchResult",
    "BenchSettings",
    "ModelSpec",
    "Progress",
    "benchmark",
    "latency_stats",
    "merge_reports",
    "parse_shape",
    "synthetic_batch",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def parse_shape(shape: str | Sequence[int]) -> Size:
    """'1024x2048', '1x3x1024x2048' or (1024, 2048) -> Size(height, width): `--shape`'s image
    size (`ocrnet.shapes.parse_input_shape`; its N is a batch size, see `BenchSettings`)."""
    return parse_input_shape(shape).size
