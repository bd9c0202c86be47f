"""Where inference time goes: per-layer times grouped by model block, against the roofline.

`profile(models, shape=..., batch=...)` opens each package with its runtime's profiler
(OpenVINO's performance counters, ONNX Runtime's profiler), runs it `iterations` times and
joins each executed node to the package's layer map (`ocrnet.layer_map`: block, FLOPs,
elements moved). Per block it reports time, share of the wall time, GFLOP/s, bytes moved at
the layer's precision, arithmetic intensity and the achieved fraction of the precision's
ceiling measured in the same run (`ocrnet.bench.roofline`). Nodes that move data between
layouts or precisions (Reorder, Convert, standalone FakeQuantize/QuantizeLinear) form their own
block: that is where int8/bf16 mixes pay.

Bytes are a lower bound: each tensor a layer reads or writes, once, at its runtime precision;
caches and the plugin's blocked layouts change the truth in both directions.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.bench.roofline import Ceilings, compute_types, measure_ceilings, save_roofline
from ocrnet.errors import OcrnetError
from ocrnet.layer_map import BLOCKS, read_layer_map

_CONVERTS = {"Reorder", "Convert", "FakeQuantize", "QuantizeLinear", "DequantizeLinear",
             "DynamicQuantizeLinear", "ReorderInput", "ReorderOutput"}
#: What ONNX Runtime appends to the names of the nodes its optimizers rewrite.
_SUFFIX = re.compile(r"(_nchwc|_token_\d+|_quant|/.*)$")
_INT8_OPS = {"QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QLinearAdd"}
_BYTES = {"int8": 1, "bf16": 2, "fp16": 2, "fp32": 4}
_RUNTIME_PRECISION = {"I8": "int8", "U8": "int8", "BF16": "bf16", "FP16": "fp16"}


@dataclass
class ModelProfile:
    """One package's profile: per-block rows and the layers behind them."""

    model: str
    backend: str
    precision: str
    batch: int
    wall_ms: float  # median of the profiled calls (profiling itself costs a little)
    layers_ms: float  # the sum of the executed nodes' times
    blocks: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    unmapped: int = 0  # nodes the layer map did not know (counted in "other")


def _precision_of(row: dict[str, Any], package_precision: str) -> str:
    kernel = str(row.get("kernel", "")).lower()
    if row.get("type") in _INT8_OPS or kernel.endswith(("_i8", "_u8")):
        return "int8"
    mapped = _RUNTIME_PRECISION.get(str(row.get("precision", "")).upper())
    if mapped:
        return mapped
    for p in ("bf16", "f16"):
        if kernel.endswith("_" + p):
            return "bf16" if p == "bf16" else "fp16"
    return "fp32" if package_precision != "fp16" else "fp16"


def _lookup(row: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The layer-map entries of the graph nodes an executed node stands for."""
    found: dict[str, dict[str, Any]] = {}
    computes = any(k in str(row.get("type", "")) for k in ("Conv", "MatMul", "Gemm"))
    for name in row.get("originals") or [row["name"]]:
        for key in (name, _SUFFIX.sub("", name)):
            if key in nodes:
                entry = nodes[key]
                found[entry.get("out") or key] = entry
                # A convolution with a fused tail, named after the tail's output (ORT), stands
                # for the convolution too.
                head = nodes.get(entry.get("via") or "") if computes else None
                if head is not None:
                    found[head.get("out") or entry["via"]] = head
                break
    return list(found.values())


def _layer(row: dict[str, Any], nodes: dict[str, dict[str, Any]], precision: str,
           batch: int) -> dict[str, Any]:
    entries = _lookup(row, nodes)
    compute = _precision_of(row, precision)
    if row.get("type") in _CONVERTS or (not entries and "quantize" in row["name"].lower()):
        # Data movement between layouts or precisions: no FLOPs of its own, bytes unknown.
        return {"name": row["name"], "type": row.get("type", ""),
                "kernel": row.get("kernel", ""), "precision": compute,
                "block": "reorders/converts", "ms": row["ms"], "flops": 0, "bytes": 0,
                "mapped": bool(entries)}
    if row.get("type") in ("TopK", "ArgMax"):  # the plugin's argmax keeps no graph name
        block = "resize+argmax"
    elif entries:
        main = max(entries, key=lambda e: e.get("flops") or 0)
        block = main["block"]
    else:
        block = "other"
    flops = sum(e.get("flops") or 0 for e in entries) * batch
    # The main node's tensors; fused elementwise tails read their extra inputs too.
    elems = (sum(e.get("act_elems") or 0 for e in entries)
             + sum(e.get("weight_elems") or 0 for e in entries)) * batch
    return {"name": row["name"], "type": row.get("type", ""), "kernel": row.get("kernel", ""),
            "precision": compute, "block": block, "ms": row["ms"], "flops": flops,
            "bytes": elems * _BYTES[compute], "mapped": bool(entries)}


def _blocks(layers: list[dict[str, Any]], wall_ms: float, ceilings: Ceilings
            ) -> list[dict[str, Any]]:
    rows = []
    for block in BLOCKS:
        mine = [x for x in layers if x["block"] == block]
        if not mine:
            continue
        ms = sum(x["ms"] for x in mine)
        flops = sum(x["flops"] for x in mine)
        nbytes = sum(x["bytes"] for x in mine)
        by_precision: dict[str, float] = {}
        for x in mine:
            by_precision[x["precision"]] = by_precision.get(x["precision"], 0.0) + x["ms"]
        main = max(by_precision, key=by_precision.__getitem__)
        rate = flops / (ms / 1e3) / 1e9 if ms and flops else None
        ceiling = ceilings.of(main)
        rows.append({
            "block": block, "ms": round(ms, 3), "share": round(ms / wall_ms, 4) if wall_ms
            else 0.0, "nodes": len(mine), "gflop": round(flops / 1e9, 4),
            "mbytes": round(nbytes / 1e6, 2), "precision": main,
            "gflops_per_s": None if rate is None else round(rate, 2),
            "intensity": round(flops / nbytes, 3) if flops and nbytes else None,
            "of_ceiling": round(rate / ceiling, 4) if rate and ceiling else None,
            "gbytes_per_s": round(nbytes / (ms / 1e3) / 1e9, 2) if ms else None,
        })
    return rows


def profile_model(path: str | Path, x: np.ndarray, ceilings: Ceilings, *, iterations: int = 3,
                  threads: int | None = None) -> ModelProfile:
    """Profile one package on the batch `x` (NCHW float32): median node times of `iterations`
    calls after a warm-up call."""
    from ocrnet.bench.timing import now_ns
    from ocrnet.engines import open_model

    path = Path(path)
    opts: dict[str, Any] = {"profile": True, **({"threads": threads} if threads else {})}
    engine = open_model(path, **opts)
    try:
        engine.infer(x)  # compilation, first-call allocations
        walls, runs = [], []
        for _ in range(iterations):
            t0 = now_ns()
            engine.infer(x)
            walls.append((now_ns() - t0) / 1e6)
            if engine.backend == "openvino":  # its counters hold the last call only
                runs.append(engine.layer_profile())
        if not runs:
            runs = [engine.layer_profile()]  # ORT: the mean over the calls since opening
        info = engine.info
    finally:
        engine.close()
    rows = _median_rows(runs)
    nodes = read_layer_map(path)
    layers = [_layer(r, nodes, info.precision, x.shape[0]) for r in rows]
    wall = statistics.median(walls)
    return ModelProfile(model=path.name, backend=info.backend, precision=info.precision,
                        batch=int(x.shape[0]), wall_ms=round(wall, 3),
                        layers_ms=round(sum(x["ms"] for x in layers), 3),
                        blocks=_blocks(layers, wall, ceilings), layers=layers,
                        unmapped=sum(not x["mapped"] and x["block"] != "reorders/converts"
                                     for x in layers))


def _median_rows(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per node, its time the median over the runs (robust to a busy machine)."""
    rows = {r["name"]: dict(r) for r in runs[0]}
    for name, row in rows.items():
        row["ms"] = statistics.median(next((r["ms"] for r in run if r["name"] == name), 0.0)
                                      for run in runs) if len(runs) > 1 else row["ms"]
    return list(rows.values())


@dataclass
class ProfileReport:
    """Profiles of several packages with the machine and its ceilings, measured in one run."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    ceilings: Ceilings
    models: list[ModelProfile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"machine": self.machine, "settings": self.settings,
                "ceilings": self.ceilings.to_json(), "warnings": self.warnings,
                "models": [asdict(m) for m in self.models]}

    def _tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        head = ["block", "ms", "share", "GFLOP", "MB moved", "FLOP/B", "G/s", "of ceiling",
                "prec"]
        out = []
        for m in self.models:
            rows = [[b["block"], f"{b['ms']:.1f}", f"{100 * b['share']:.1f}%",
                     f"{b['gflop']:.2f}", f"{b['mbytes']:.1f}", _fmt(b["intensity"], ".1f"),
                     _fmt(b["gflops_per_s"], ".1f"), _fmt(b["of_ceiling"], ".0%"),
                     b["precision"]] for b in m.blocks]
            rows.append(["(sum of layers)", f"{m.layers_ms:.1f}",
                         f"{100 * m.layers_ms / m.wall_ms:.1f}%" if m.wall_ms else "", "", "",
                         "", "", "", ""])
            title = (f"{m.model} ({m.backend} {m.precision}, batch {m.batch}): "
                     f"{m.wall_ms:.1f} ms per call")
            out.append((title, head, rows))
        return out

    def _header(self) -> list[str]:
        mc, c = self.machine, self.ceilings
        ceil = ", ".join(f"{p} {v:.1f} G/s ({c.kernels.get(p, '?')})"
                         for p, v in c.gflops.items())
        lines = [f"machine: {mc.get('cpu')}, {mc.get('cores_usable')} cores, flags "
                 f"{' '.join(mc.get('cpu_flags') or []) or '-'}, load {mc.get('load_avg_1m')}",
                 f"ceilings (this run): {ceil}; memory {c.bandwidth_gbs} GB/s"]
        lines += [f"not probed: {p}: {why}" for p, why in c.skipped.items()]
        return lines

    def table(self) -> str:
        from ocrnet.tables import text_table

        parts = self._header()
        for title, head, rows in self._tables():
            parts += ["", title, text_table(head, rows)]
        parts += [f"warning: {w}" for w in self.warnings]
        return "\n".join(parts)

    def markdown(self) -> str:
        from ocrnet.tables import markdown_table

        parts = [f"- {line}" for line in self._header()]
        for title, head, rows in self._tables():
            parts += ["", f"**{title}**", "", markdown_table(head, rows)]
        return "\n".join(parts) + "\n"

    def save_json(self, path: str | Path) -> Path:
        from ocrnet.fileio import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")

    def save_markdown(self, path: str | Path) -> Path:
        from ocrnet.fileio import atomic_write_text

        return atomic_write_text(path, self.markdown())

    def save_plot(self, path: str | Path) -> Path:
        h, w = self.settings["shape"]
        title = (f"roofline, {h}x{w} batch {self.settings['batch']}, "
                 f"{self.machine.get('cpu')} ({self.machine.get('cores_usable')} cores, "
                 f"load {self.machine.get('load_avg_1m')})")
        return save_roofline(path, self.ceilings, {m.model: m.blocks for m in self.models},
                             title)


def _fmt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def profile(models: Sequence[str | Path], *, shape: tuple[int, int], batch: int = 1,
            iterations: int = 3, threads: int | None = None, seed: int = 0,
            ceilings: Ceilings | None = None) -> ProfileReport:
    """Measure the ceilings (unless given), then profile each package on one synthetic batch."""
    from ocrnet.bench.inputs import synthetic_batch
    from ocrnet.machine import machine_info
    from ocrnet.package import read_package

    if not models:
        raise OcrnetError("no packages to profile")
    packages = [read_package(m) for m in models]  # a bad path fails before minutes of probes
    types = [t for p in packages for t in compute_types(p.precision.value)]
    machine = machine_info()
    ceilings = ceilings or measure_ceilings(types, threads)
    x = synthetic_batch(batch, *shape, np.random.default_rng(seed))
    report = ProfileReport(machine, {"shape": list(shape), "batch": batch,
                                     "iterations": iterations, "threads": threads, "seed": seed},
                           ceilings)
    load, cores = machine.get("load_avg_1m"), machine.get("cores_usable") or 1
    if load is not None and load > 0.5 * cores:
        report.warnings.append(f"the machine was busy (1-minute load {load} on {cores} cores): "
                               "times and ceilings are both low and noisy")
    for path in models:
        result = profile_model(path, x, ceilings, iterations=iterations, threads=threads)
        if result.unmapped and not read_layer_map(path):
            report.warnings.append(f"{result.model} has no layer map (built before layers.json"
                                   "): its layers are all 'other'; rebuild it to group them")
        report.models.append(result)
    return report


def write_profile(models: Sequence[str | Path], out: str | Path, **options: Any) -> ProfileReport:
    """`profile(models, **options)`, written to OUT/profile.{txt,md,json,png}."""
    from ocrnet.fileio import atomic_write_text, prepare_folder

    for m in models:
        if not Path(m).is_dir():
            raise OcrnetError(f"--profile needs engine packages (openvino, onnxruntime); {m} is "
                              "not a package folder: build one with `ocrnet build`")
    out = prepare_folder(out)
    report = profile(models, **options)
    atomic_write_text(out / "profile.txt", report.table() + "\n")
    report.save_markdown(out / "profile.md")
    report.save_json(out / "profile.json")
    report.save_plot(out / "profile.png")
    return report
