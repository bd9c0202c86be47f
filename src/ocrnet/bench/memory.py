"""Memory probes: resident set size, its true peak over a block of calls, CUDA's peak."""

from __future__ import annotations

import gc
import sys
from pathlib import Path


def rss_mb() -> float:
    """The process's resident memory now, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class PeakRss:
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
        return rss_mb()


class Watch:
    """Peak host (and, for `cuda` models, CUDA) memory over one block of calls.

    After the block, `rss_mb` and `gpu_mb` (None without CUDA) hold the peaks. The garbage
    collector is off inside: a collection in a timed call is the harness's noise, not the model's.
    """

    def __init__(self, peak: PeakRss, cuda: bool) -> None:
        self.peak = peak
        self.rss_mb = 0.0
        self.gpu_mb: float | None = None
        self.torch = sys.modules.get("torch") if cuda else None
        if self.torch is not None and not self.torch.cuda.is_available():
            self.torch = None

    def __enter__(self) -> Watch:
        self.peak.reset()
        if self.torch is not None:
            self.torch.cuda.reset_peak_memory_stats()
        gc.disable()
        return self

    def __exit__(self, *exc: object) -> None:
        gc.enable()
        self.rss_mb = self.peak.read_mb()
        if self.torch is not None:
            self.gpu_mb = self.torch.cuda.max_memory_allocated() / 2**20
