"""What a benchmark measured: one `BenchResult` per model x batch, the `BenchReport` around them
(JSON with a versioned schema, terminal and Markdown tables, plot), merging and ratios.

Pure data: nothing here runs a model, so reports load and merge anywhere (see `isolate`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.errors import OcrnetError
from ocrnet.tables import markdown_table, text_table

LATENCY_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "max")
SCHEMA_VERSION = 1
#: Stages of the end-to-end (files -> label PNGs) mode, in ms per image.
E2E_STAGES = ("decode", "preprocess", "input_wait", "infer", "postprocess", "encode")


def latency_stats(samples_ns: Sequence[int]) -> dict[str, float]:
    """min/mean/p50/p90/p95/p99/max in milliseconds (percentiles linearly interpolated)."""
    if len(samples_ns) == 0:
        return dict.fromkeys(LATENCY_KEYS, math.nan)
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    values = (ms.min(), ms.mean(), p50, p90, p95, p99, ms.max())
    return {k: round(float(v), 4) for k, v in zip(LATENCY_KEYS, values, strict=True)}


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
        text = text_table(*self._rows(), left=_NAMES)
        head, rows = self._e2e_rows()
        if rows:
            text += "\n\nend-to-end (files -> label PNGs; stage columns in ms per image)\n"
            text += text_table(head, rows)
        return text

    def markdown(self) -> str:
        """The same tables as Markdown, with the machine line above them."""
        m = self.machine
        lines = [f"Machine: {m.get('cpu')} ({m.get('cores_usable')} usable cores"
                 f"{', ' + m['gpu']['name'] if m.get('gpu') else ''}); "
                 f"flags: {', '.join(m.get('cpu_flags') or []) or '-'}", ""]
        lines.append(markdown_table(*self._rows(), left=_NAMES))
        head, rows = self._e2e_rows()
        if rows:
            lines += ["", "End-to-end (files → label PNGs; stage columns in ms per image)", ""]
            lines.append(markdown_table(head, rows))
        lines += [f"\n> {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"

    def save_markdown(self, path: str | os.PathLike[str]) -> Path:
        return _write(path, self.markdown())

    def save_plot(self, path: str | os.PathLike[str]) -> Path:
        """PNG: latency distribution per model x batch, and throughput against batch size."""
        from ocrnet.visualize import benchmark_plot

        shape = "x".join(map(str, self.settings.get("shape") or []))
        return benchmark_plot([r.to_json() for r in self.results], path,
                              title=f"{self.machine.get('cpu')} — input {shape}")


#: Columns of names (model, backend, precision), aligned left; the numbers go right.
_NAMES = 3


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
    set_ratios(merged.results)
    return merged


def set_ratios(results: list[BenchResult]) -> None:
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


def _num(v: float | None, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.{digits}f}" if abs(v) >= 0.1 or v == 0 else f"{v:.3g}"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _write(path: str | os.PathLike[str], text: str) -> Path:
    from ocrnet.fileio import atomic_write_text

    return atomic_write_text(path, text)
