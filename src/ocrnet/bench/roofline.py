"""The machine's ceilings, measured in the run that uses them, and the roofline plot.

A layer's achieved rate means little without what the same machine reaches at that moment, so
the profile probes it in the same process (on a loaded machine both sink together):

* compute, per precision: a 1x1 convolution 512 -> 512 channels on a 128x128 map (8.6 GFLOP),
  compiled by OpenVINO's CPU plugin (the kernels the packages run), the best of a few calls of
  the convolution node alone (its performance counter, so input reorders are not counted).
  int8 is the same convolution between FakeQuantize pairs; the probe records the kernel the
  plugin picked, so an int8 that the plugin runs as f32 (no int8 kernels for this CPU) shows.
  bf16/fp16 are probed only where the CPU has them natively (`ocrnet.machine` flags): the
  plugin would emulate or refuse them elsewhere, and an emulated ceiling is no ceiling;
* memory bandwidth: `torch.add(a, b, out=c)` on 256 MiB arrays with all threads (2 reads and
  1 write per element), the best of a few; it is the roofline's slope.

The plot: arithmetic intensity (FLOP per byte moved) against achieved GFLOP/s on log axes, the
ceilings as horizontal lines, the bandwidth as the slope, one dot per block (area ~ its time).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: The CPU flags that make a half type native (else it is not probed).
_NATIVE = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}
_HINT = {"fp32": "f32", "int8": "f32", "bf16": "bf16", "fp16": "f16"}


@dataclass
class Ceilings:
    """GFLOP/s (GOP/s for int8) per precision, GB/s, and what each probe ran."""

    gflops: dict[str, float] = field(default_factory=dict)
    bandwidth_gbs: float | None = None
    kernels: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def of(self, precision: str) -> float | None:
        """The ceiling for a layer of `precision` (fp32's where the precision is not native)."""
        return self.gflops.get(precision) or self.gflops.get("fp32")


def _fq(x: Any, lo: float | np.ndarray, hi: float | np.ndarray, levels: int = 256) -> Any:
    import openvino.opset13 as ops

    def c(v: float | np.ndarray) -> Any:
        return ops.constant(np.asarray(v, np.float32))

    return ops.fake_quantize(x, c(lo), c(hi), c(lo), c(hi), levels)


def _conv_model(channels: int, size: int, int8: bool) -> Any:
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, channels, size, size], np.float32, name="x")
    w = ops.constant(np.random.default_rng(0).uniform(-1, 1, (channels, channels, 1, 1))
                     .astype(np.float32))
    a, b = x, w
    if int8:
        # NNCF's pattern: u8 activations, symmetric per-channel weights of 255 levels (with
        # one scalar range of 256 levels the plugin keeps the convolution in f32).
        hi = np.ones((channels, 1, 1, 1), np.float32)
        a, b = _fq(x, 0.0, 4.0), _fq(w, -hi, hi, levels=255)
    y = ops.convolution(a, b, [1, 1], [0, 0], [0, 0], [1, 1])
    if int8:  # a quantized consumer, as between two int8 layers of the model
        y = _fq(ops.relu(y), 0.0, 8.0)
    return ov.Model([y], [x])


def probe_compute(precision: str, threads: int | None = None, channels: int = 512,
                  size: int = 128, repeats: int = 5) -> tuple[float, str]:
    """(GFLOP/s, the convolution kernel) of OpenVINO's CPU plugin at `precision`."""
    import openvino as ov

    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _HINT[precision], "PERF_COUNT": True,
                              "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = ov.Core().compile_model(_conv_model(channels, size, precision == "int8"), "CPU",
                                       config)
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).uniform(0, 4, (1, channels, size, size)).astype(np.float32)
    request.infer({0: x})
    best, kernel = float("inf"), "?"
    for _ in range(repeats):
        request.infer({0: x})
        for p in request.profiling_info:
            if p.node_type == "Convolution" and p.status.name == "EXECUTED":
                best, kernel = min(best, p.real_time.total_seconds()), p.exec_type
    flops = 2 * channels * channels * size * size
    return flops / best / 1e9, kernel


def probe_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """GB/s of an all-threads a + b -> c over `mib` MiB arrays (bytes read + written)."""
    import torch

    n = mib * 2**20 // 4
    a, b, c = torch.ones(n), torch.ones(n), torch.empty(n)
    torch.add(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.add(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 3 * 4 * n / best / 1e9


def measure_ceilings(precisions: list[str], threads: int | None = None) -> Ceilings:
    """Probe fp32 (always) and each of `precisions`' compute types the CPU runs natively."""
    from ocrnet.machine import cpu_flags

    flags = cpu_flags()
    out = Ceilings()
    for p in dict.fromkeys(["fp32", *precisions]):
        if p in _NATIVE and not flags & set(_NATIVE[p]):
            out.skipped[p] = (f"not native on this CPU (needs one of {', '.join(_NATIVE[p])}); "
                              f"{p} layers are measured against the fp32 ceiling")
            continue
        rate, kernel = probe_compute(p, threads)
        out.gflops[p], out.kernels[p] = round(rate, 2), kernel
        if p == "int8" and not kernel.lower().endswith(("_i8", "_u8")):
            out.skipped["int8-kernel"] = (f"the plugin ran the int8 probe as {kernel}: this CPU "
                                          "gets no int8 convolution kernels from it")
    out.bandwidth_gbs = round(probe_bandwidth(), 2)
    return out


def compute_types(precision: str) -> list[str]:
    """The compute types a package precision runs: int8-bf16 runs int8 and bf16 layers."""
    parts = precision.split("-")
    return parts if parts[0] == "int8" else [precision]


def save_roofline(path: str | Path, ceilings: Ceilings,
                  series: dict[str, list[dict[str, Any]]], title: str) -> Path:
    """The roofline PNG: one marker style per model, one dot per block (area ~ its time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ocrnet.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=120)
    top = max([*ceilings.gflops.values(), 1.0])
    bw = ceilings.bandwidth_gbs or 1.0
    points = [r for rows in series.values() for r in rows
              if r.get("intensity") and r.get("gflops_per_s")]
    lo_x = min([top / bw / 10, *(r["intensity"] / 2 for r in points)])
    hi_x = max([top / bw * 10, *(r["intensity"] * 2 for r in points)])
    lo_y = min([top / 100, *(r["gflops_per_s"] / 2 for r in points)])
    xs = np.logspace(np.log10(lo_x), np.log10(hi_x), 200)
    ax.plot(xs, np.minimum(bw * xs, top), color="0.3", lw=1.5,
            label=f"memory {bw:.1f} GB/s")
    for (p, v), style in zip(sorted(ceilings.gflops.items()), ("--", ":", "-.", "-"),
                             strict=False):
        ax.plot(xs, np.minimum(bw * xs, v), color="0.45", ls=style, lw=1)
        ax.text(lo_x * 1.1, v * 1.06, f"{p} ceiling {v:.0f} G/s ({ceilings.kernels.get(p, '')})",
                fontsize=8, color="0.25")
    colors = plt.get_cmap("tab20").colors
    markers = "osD^v<>p*h"
    for m, rows in enumerate(series.values()):
        for i, r in enumerate(rows):
            if not r.get("intensity") or not r.get("gflops_per_s"):
                continue
            ax.scatter(r["intensity"], r["gflops_per_s"], s=20 + 400 * r["share"],
                       color=colors[i % len(colors)], marker=markers[m % len(markers)],
                       edgecolors="black", linewidths=0.5, alpha=0.85,
                       label=r["block"] if m == 0 else None)
            if r["share"] >= 0.05:  # name only the blocks that matter; the legend has all
                ax.annotate(r["block"], (r["intensity"], r["gflops_per_s"]), fontsize=7,
                            xytext=(5, -3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo_x, hi_x)
    ax.set_ylim(lo_y, top * 2)
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    ax.set_ylabel("achieved GFLOP/s (GOP/s for int8)")
    shapes = ", ".join(f"{markers[m % len(markers)]} {name}" for m, name in enumerate(series))
    ax.set_title(f"{title}\nmarkers: {shapes}; dot area ~ share of time", fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
