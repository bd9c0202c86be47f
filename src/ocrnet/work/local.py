"""The in-process executor: one engine, decode and encode on threads, the kernel over all items.

An executor takes a model (an open `Engine`, or a path it opens), a kernel and the items, runs
the kernel and hands every `(index, record)` to `on_record` (the run's `Tally.add`) under one
progress bar. It returns what it learnt on the way (the model's name, the kernel's `setup`
info). `ocrnet.jobs.RayExecutor` is the other executor; a test runs both over one contract.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ocrnet import defaults
from ocrnet.engines import opened_engine, stream_count
from ocrnet.engines.base import Engine
from ocrnet.progress import progress_bar

OnRecord = Callable[[int, dict[str, Any]], "str | None"]
Model = Engine | str | os.PathLike[str] | None


class Kernel(Protocol):
    """What `ocrnet.work.kernels` defines: checks once per engine, then works chunks."""

    needs_engine: bool

    def setup(self, engine: Engine, name: str) -> dict[str, Any]: ...

    def run(self, engine: Engine | None, chunk: Sequence[tuple[int, Any]], *,
            workers: int | None = None,
            prefetch: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]: ...


class Executor(Protocol):
    """Runs a kernel over items somewhere; every record reaches `on_record` once."""

    def run(self, model: Model, kernel: Kernel, items: Sequence[Any], *, desc: str,
            progress: bool, on_record: OnRecord) -> dict[str, Any]: ...


@dataclass
class LocalExecutor:
    """This process: the model opened once on `device` (`threads` inference threads, `streams`
    requests at once, see `ocrnet.engines.stream_count`: the kernels keep that many batches in
    flight), images decoded on `workers` threads with `prefetch` in flight."""

    device: str = defaults.DEVICE
    trust_checkpoint: bool = False
    trust_package: bool = False
    threads: int | None = None
    workers: int | None = None
    prefetch: int | None = None
    streams: int | None = None  # None: chosen for the machine and backend

    def run(self, model: Model, kernel: Kernel, items: Sequence[Any], *, desc: str,
            progress: bool, on_record: OnRecord) -> dict[str, Any]:
        chunk = list(enumerate(items))
        if not kernel.needs_engine:
            drain(kernel.run(None, chunk, workers=self.workers or min(4, os.cpu_count() or 1),
                             prefetch=self.prefetch), len(chunk), desc, progress, on_record)
            return {}
        assert model is not None, "this kernel needs a model"
        streams = stream_count(model, self.streams, self.threads)
        with opened_engine(model, device=self.device, trust_checkpoint=self.trust_checkpoint,
                           trust_package=self.trust_package, threads=self.threads,
                           streams=streams) as (engine, name):
            info = {"model": name, **kernel.setup(engine, name)}
            drain(kernel.run(engine, chunk, workers=self.workers, prefetch=self.prefetch),
                  len(chunk), desc, progress, on_record)
        return info


def drain(records: Iterator[tuple[int, dict[str, Any]]], total: int, desc: str,
          progress: bool, on_record: OnRecord) -> None:
    """Every record into `on_record`, under a progress bar of `total` items."""
    with progress_bar(total, progress, desc) as bar:
        for index, record in records:
            postfix = on_record(index, record)
            if postfix:
                bar.set_postfix_str(postfix, refresh=False)
            bar.update(1)
