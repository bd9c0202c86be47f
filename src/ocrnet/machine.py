"""What machine a measurement ran on: CPU, instruction sets, cores, memory, GPU, library versions.

Benchmark numbers are only comparable with this next to them. Everything is read from the OS
(`/proc`, `/sys`) and package metadata without importing the optional backends, so collecting it
is cheap and never fails: a field that cannot be read is `None`.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# The instruction sets that decide which kernels fp32/bf16/int8 engines can use on x86.
CPU_FLAGS_OF_INTEREST = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
    "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
)
LIBRARIES = ("ocrnet", "torch", "onnxruntime", "openvino", "numpy", "opencv-python-headless")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpuinfo() -> tuple[str | None, set[str]]:
    """CPU model name and feature flags from /proc/cpuinfo (Linux), else platform's guess."""
    text = _read("/proc/cpuinfo") or ""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:  # Features: the aarch64 spelling
            flags = set(value.split())
    return model or platform.processor() or None, flags


def cpu_flags() -> set[str]:
    """This CPU's feature flags (e.g. avx512_vnni), empty where the OS does not say."""
    return _cpuinfo()[1]


def _cpu_quota() -> float | None:
    """CPUs granted by a cgroup v2 quota (containers); None when unlimited or unknown."""
    text = _read("/sys/fs/cgroup/cpu.max")
    if not text or text.startswith("max"):
        return None
    quota, _, period = text.partition(" ")
    try:
        return round(int(quota) / int(period), 2)
    except ValueError:
        return None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _gpu() -> dict[str, Any] | None:
    """The CUDA device torch sees, if torch is already imported (importing it here costs ~1 s)."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(0)
        return {
            "name": props.name,
            "count": torch.cuda.device_count(),
            "memory_gb": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
        }
    except RuntimeError:  # a broken driver must not break the report
        return None


def usable_cores() -> int:
    """The cores this process may run on: taskset/cgroups often grant fewer than the host has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """Describe this machine for a benchmark report (JSON-serialisable, no side effects)."""
    import psutil

    model, flags = _cpuinfo()
    usable = usable_cores()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": model,
        "arch": platform.machine(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_logical": psutil.cpu_count(logical=True),
        # What this process may run on: taskset/cgroups often grant fewer than the host has.
        "cores_usable": usable,
        "cpu_quota": _cpu_quota(),
        "cpu_flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags],
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        # A busy machine makes every number slower; the load says how busy it was at the start.
        "load_avg_1m": round(load[0], 2) if load else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "gpu": _gpu(),
        "libraries": _versions(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                           "CUDA_VISIBLE_DEVICES") if k in os.environ},
    }
