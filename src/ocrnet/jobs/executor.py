"""The Ray executor: a kernel of `ocrnet.work.kernels` over an actor pool, records collected.

The driver ships the model through the object store (`shipping.py`), streams one row per item
through Ray Data's `map_batches` into a pool of `KernelActor`s (`worker.py`: the model opened
once, `kernel.setup` run once, `kernel.run` per task) and hands every record, once per index
however often Ray retried a task, to the run's tally (`records.py`). Kernels without a model
(scoring saved predictions) run as plain tasks. Inputs and outputs must be at the same path on
every node (a shared mount); the model need not be.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ocrnet import defaults
from ocrnet.engines.base import Engine
from ocrnet.errors import OcrnetError
from ocrnet.jobs.cluster import connect, images_per_task, map_options, plan_actors, rows_dataset
from ocrnet.jobs.records import collect
from ocrnet.jobs.shipping import release_model, ship_model
from ocrnet.jobs.worker import KernelActor, run_tasks
from ocrnet.work.local import Kernel, Model, OnRecord
from ocrnet.work.tally import from_wire

_ITEMS_PER_TASK = 8  # engine-free tasks: enough to amortise Ray's per-task cost


@dataclass
class RayExecutor:
    """The Ray cluster at `address` (`local`, `auto`, HOST:PORT): `workers` engine actors
    (default one per node) of `threads` threads each (default: the node's cores)."""

    address: str = "local"
    workers: int | None = None
    threads: int | None = None
    device: str = defaults.DEVICE
    trust_checkpoint: bool = False
    trust_package: bool = False

    @staticmethod
    def check_model(model: Model, verb: str) -> None:
        """An open engine cannot travel: refuse it before any work."""
        if isinstance(model, Engine):
            raise OcrnetError(f"{verb} on Ray needs a model path (package folder, .onnx or "
                              ".pth): an open engine cannot travel to other machines")

    def run(self, model: Model, kernel: Kernel, items: Sequence[Any], *, desc: str,
            progress: bool, on_record: OnRecord) -> dict[str, Any]:
        rows = [{"index": i, "item": pickle.dumps(item)} for i, item in enumerate(items)]

        def take(index: int, record: dict[str, Any]) -> str | None:
            return on_record(index, from_wire(record))

        info: dict[str, Any] = {"address": self.address}
        with connect(self.address) as ray:
            if not kernel.needs_engine:
                opts: dict[str, Any] = {"batch_size": _ITEMS_PER_TASK, "batch_format": "numpy",
                                        "num_cpus": 1,
                                        "fn_kwargs": {"kernel": kernel, "cwd": os.getcwd()}}
                if self.workers:
                    opts["concurrency"] = self.workers
                ds = rows_dataset(ray, rows, _ITEMS_PER_TASK).map_batches(run_tasks, **opts)
                collected = collect(ds, len(rows), desc=desc, progress=progress, on_record=take)
                info.update(workers=self.workers, workers_used=collected.workers_json(),
                            repeats_ignored=collected.repeats)
                return {"ray": info}
            self.check_model(model, desc)
            assert model is not None
            plan = plan_actors(ray, self.workers, self.threads)
            shipped = ship_model(ray, model)
            per_task = images_per_task(len(rows), getattr(kernel.options, "batch_size", 1),
                                       plan.workers)
            ds = rows_dataset(ray, rows, per_task).map_batches(
                KernelActor, batch_size=per_task,
                fn_constructor_kwargs={
                    "model": shipped, "kernel": kernel, "threads": plan.threads,
                    "pinning": plan.pinning, "device": self.device,
                    "trust_checkpoint": self.trust_checkpoint,
                    "trust_package": self.trust_package, "cwd": os.getcwd()},
                **map_options(plan, self.device))
            try:
                collected = collect(ds, len(rows), desc=desc, progress=progress, on_record=take)
            finally:
                release_model(ray, shipped)
        workers = collected.workers_json()
        info.update(plan.to_json(), model=shipped.to_json(), workers_used=workers,
                    repeats_ignored=collected.repeats, **collected.rates())
        setup = workers[0].get("setup", {}) if workers else {}
        return {"model": str(model), **setup, "ray": info}
