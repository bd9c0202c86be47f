"""The clock and the timing loops: first call, warm-up, blocks of calls, K in flight, round-robin.

Every duration in `ocrnet.bench` is read through `now_ns()`, i.e. `time.perf_counter_ns`
(monotonic) of this module's `time`: tests swap that one name for a virtual clock. A call is
timed around `engine.infer`, which returns host arrays, plus the model's device synchronisation
(`torch.cuda.synchronize()` for CUDA torch engines).
"""

from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ocrnet.bench.memory import PeakRss, Watch
from ocrnet.errors import OcrnetError

if TYPE_CHECKING:
    from ocrnet.engines.base import Engine


class TimedModel(Protocol):
    """What the clock needs of a model (`ocrnet.bench.models.LoadedModel` is one): a protocol,
    so this module imports nothing of the models that import its clock."""

    name: str
    engine: Engine
    sync: Callable[[], None] | None  # device synchronisation inside the timed region
    cuda: bool


def now_ns() -> int:
    """The benchmark's clock: monotonic nanoseconds."""
    return time.perf_counter_ns()


@dataclass(frozen=True)
class Stop:
    """When a measurement is done: a count of calls, or seconds with a minimum count."""

    iterations: int | None
    duration_ns: int
    min_iterations: int

    def done(self, count: int, elapsed_ns: int) -> bool:
        if self.iterations is not None:
            return count >= self.iterations
        return count >= self.min_iterations and elapsed_ns >= self.duration_ns


@dataclass
class Unit:
    """One model at one batch size: its input and everything measured on it."""

    model: TimedModel
    batch: int
    x: np.ndarray
    first_ms: float = math.nan
    lat: list[int] = field(default_factory=list)
    busy_ns: int = 0
    s_lat: list[int] = field(default_factory=list)
    s_wall_ns: int = 0
    s_mode: str | None = None  # "threads" or "async"
    peak_rss: float = 0.0
    gpu_peak: float | None = None

    def call(self) -> int:
        """One timed inference, device synchronised; returns its duration in ns."""
        t0 = now_ns()
        self.model.engine.infer(self.x)
        if self.model.sync is not None:
            self.model.sync()
        return now_ns() - t0


def first_and_warmup(u: Unit, warmup: int | None, warmup_s: float) -> None:
    """The first inference, timed on its own (lazy compilation), then `warmup` calls or seconds."""
    try:
        u.first_ms = u.call() / 1e6
    except OcrnetError:
        raise
    except Exception as err:  # a runtime's own shape/type error: say which model and input
        raise OcrnetError(f"{u.model.name} failed on input {tuple(u.x.shape)}: "
                          f"{type(err).__name__}: {err}") from err
    start, n = now_ns(), 0
    while (n < warmup) if warmup is not None else (now_ns() - start < warmup_s * 1e9):
        u.call()
        n += 1


def sync_block(u: Unit, stop: Stop, round_ns: int) -> None:
    """Calls one after another for about `round_ns` (at least one), or until `stop`."""
    start = now_ns()
    while True:
        dt = u.call()
        u.lat.append(dt)
        u.busy_ns += dt
        if stop.done(len(u.lat), u.busy_ns) or now_ns() - start >= round_ns:
            return


def stream_block(u: Unit, stop: Stop, round_ns: int, streams: int) -> None:
    """K requests in flight for about `round_ns`; throughput = images / block wall time.

    Engines with `infer_async(batch) -> Future` (native async requests) keep K futures
    outstanding; others get K threads calling `infer`, which they must then allow.
    """
    budget = stop.iterations * streams - len(u.s_lat) if stop.iterations is not None else None
    infer_async = getattr(u.model.engine, "infer_async", None)
    start = now_ns()
    if callable(infer_async):
        u.s_mode = "async"
        _async_block(u, infer_async, budget, round_ns, streams, start)
    else:
        u.s_mode = "threads"
        _thread_block(u, budget, round_ns, streams, start)
    u.s_wall_ns += now_ns() - start


def _thread_block(u: Unit, budget: int | None, round_ns: int, streams: int, start: int) -> None:
    lock, issued, errors = threading.Lock(), [0], []

    def worker() -> None:
        while True:
            with lock:
                # Every stream gets a request, however short the round.
                if (budget is not None and issued[0] >= budget) or \
                        (issued[0] >= streams and now_ns() - start >= round_ns):
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


def _async_block(u: Unit, infer_async: Callable[[np.ndarray], Future], budget: int | None,
                 round_ns: int, streams: int, start: int) -> None:
    issued, n0 = 0, len(u.s_lat)
    inflight: set[Future] = set()

    def submit() -> None:
        t0 = now_ns()
        fut = infer_async(u.x)
        # Completion is stamped in the completing thread: no head-of-line bias from waiting.
        fut.add_done_callback(lambda _f, t0=t0: u.s_lat.append(now_ns() - t0))
        inflight.add(fut)

    def may_issue() -> bool:
        if budget is not None and issued >= budget:
            return False
        return issued < streams or now_ns() - start < round_ns

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
    deadline = now_ns() + 10**9
    while len(u.s_lat) - n0 < issued and now_ns() < deadline:
        time.sleep(0)
    if u.model.sync is not None:
        u.model.sync()


def interleave(units: list[Unit], block: Callable[[Unit], None],
               done: Callable[[Unit], bool], peak: PeakRss) -> None:
    """Round-robin blocks over the units until each is done, with each block's memory peak.

    Slow drift of the machine (heat, a neighbour's job, frequency scaling) so lands on all
    models alike. Blocks rather than single calls, because CPU runtimes keep their thread pools
    spinning for a while after a call returns, which would bill one model's spin to the next.
    """
    pending = list(units)
    gc.collect()
    while pending:
        for u in pending:
            with Watch(peak, u.model.cuda) as watch:
                block(u)
            u.peak_rss = max(u.peak_rss, watch.rss_mb)
            if watch.gpu_mb is not None:
                u.gpu_peak = max(u.gpu_peak or 0.0, watch.gpu_mb)
        pending = [u for u in pending if not done(u)]
