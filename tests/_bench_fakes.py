"""Fake engines for the `ocrnet bench` tests (test_bench.py, test_bench_cli.py): they sleep known
durations, so the harness is checked without any real backend."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ocrnet import bench
from ocrnet.bench import benchmark
from ocrnet.engines.base import Engine, InferResult

SHAPE = "32x64"  # tiny inputs: the fakes ignore them, the harness still builds them


class SleepEngine(Engine):
    """Sleeps `durations_ms[i % len]` on call i; logs (name, batch) of every call to `log`."""

    backend = "fake"

    def __init__(self, name: str, durations_ms: tuple[float, ...] = (2.0,),
                 log: list[str] | None = None, **meta: Any) -> None:
        super().__init__()
        self.name, self.durations, self.log, self.calls = name, durations_ms, log, 0
        self._metadata = {"backend": "fake", "precision": "fp32", "device": "cpu",
                          "name": name, **meta}
        self._lock = threading.Lock()

    @classmethod
    def build(cls, request: Any, out_dir: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def open(cls, package: Any, device: str = "cpu", **opts: Any) -> Engine:
        raise NotImplementedError

    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        with self._lock:
            d = self.durations[self.calls % len(self.durations)]
            self.calls += 1
            if self.log is not None:
                self.log.append(self.name)
        time.sleep(d / 1e3)
        n, _, h, w = batch.shape
        return InferResult(labels=np.zeros((n, h, w), np.uint8))


class AsyncSleepEngine(SleepEngine):
    """Also offers the `infer_async` hook, backed by a pool of `workers` requests."""

    def __init__(self, *args: Any, workers: int = 4, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.pool = ThreadPoolExecutor(workers)
        self.async_calls = 0

    def infer_async(self, batch: np.ndarray) -> Future:
        self.async_calls += 1
        return self.pool.submit(self.infer, batch)

    def _close_impl(self) -> None:
        self.pool.shutdown()


def quick(models: Any, **kw: Any) -> bench.BenchReport:
    opts = {"shape": SHAPE, "warmup": 0, "iterations": 10, "round_s": 0.0, **kw}
    return benchmark(models, **opts)
