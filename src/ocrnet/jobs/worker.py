"""The engine actor: runs one `ocrnet.work.kernels` kernel over the rows Ray Data sends it.

Each actor works in the driver's folder, takes this node's copy of the shipped model, opens it
once with its threads sized to the CPUs Ray gave it (OpenVINO pinning off where actors share a
node), runs the kernel's `setup` once and tags every record it sends with where it ran and when
its task started and ended.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import time
from pathlib import Path
from typing import Any

from ocrnet.errors import OcrnetError
from ocrnet.jobs.records import encode_records
from ocrnet.jobs.shipping import ShippedModel, materialize
from ocrnet.work.local import Kernel
from ocrnet.work.tally import to_wire


class KernelActor:
    """Opens the shipped model once per actor, threads sized to the actor's CPUs.

    A user error while opening or in `kernel.setup` (a corrupt transfer, a package this node
    cannot run, a model of other classes) does not kill the actor, which Ray would only start
    again: it is kept in `error`, every row is answered with it, and the driver stops with
    that one line.
    """

    def __init__(self, model: ShippedModel, *, kernel: Kernel, threads: int,
                 pinning: bool | None, device: str, trust_checkpoint: bool,
                 trust_package: bool, cwd: str | None = None) -> None:
        import ray

        follow_driver(cwd)
        node_id = ray.get_runtime_context().get_node_id()
        self.kernel = kernel
        self.worker: dict[str, Any] = {"node": node_id, "host": socket.gethostname(),
                                       "pid": os.getpid()}
        self.error: str | None = None
        try:
            self._open(model, node_id, threads, pinning, device, trust_checkpoint,
                       trust_package)
            self.worker["setup"] = kernel.setup(self.engine, model.source)
        except OcrnetError as err:
            self.error = error_line(err, node_id, self.worker["host"])

    def _open(self, model: ShippedModel, node_id: str, threads: int, pinning: bool | None,
              device: str, trust_checkpoint: bool, trust_package: bool) -> None:
        from ocrnet.engines import open_model

        path, fetched = materialize(model, node_id)
        opts: dict[str, Any] = {"threads": threads}
        engine_config: dict[str, Any] = {"threads": threads}
        if model.is_package and _backend_of(path) == "openvino":
            engine_config = {"INFERENCE_NUM_THREADS": threads,
                             "ENABLE_CPU_PINNING": "engine default" if pinning is None
                             else pinning}
            if pinning is not None:
                opts["pinning"] = pinning
        elif model.is_package and _backend_of(path) == "onnxruntime":
            engine_config = {"intra_op_num_threads": threads}
        self.engine = open_model(path, device=device, trust_checkpoint=trust_checkpoint,
                                 trust_package=trust_package, **opts)
        self.worker.update(engine=engine_config, model_path=str(path), fetched_model=fetched)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Ray Data's entry point: the kernel over the rows, each record tagged with this actor
        and the task's start and end (the driver derives the actors' idle time from them)."""
        start = time.time()
        chunk = rows_of(batch)
        if self.error is not None:
            indices, records = [i for i, _ in chunk], [{"error": self.error} for _ in chunk]
        else:
            # One decode thread: the actor's CPUs belong to its engine.
            indices, records = run_chunk(self.kernel, self.engine, chunk, workers=1)
        task = [start, time.time()]
        for record in records:
            record.update(worker=self.worker, task=task)
        return encode_records(indices, records)


def error_line(err: OcrnetError, node_id: str, host: str) -> str:
    """`err`'s one line naming the Ray node and host it happened on, the node once: the model
    shipping's errors (`ocrnet.jobs.shipping`) name it already."""
    node = f"Ray node {node_id[:12]}"
    return f"{err} ({host})" if node in str(err) else f"{err} ({node}, {host})"


def run_tasks(batch: dict[str, Any], kernel: Kernel, cwd: str | None = None) -> dict[str, Any]:
    """A Ray task for a kernel without a model (scoring saved predictions)."""
    import ray

    follow_driver(cwd)
    worker = {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    indices, records = run_chunk(kernel, None, rows_of(batch), workers=1)
    for record in records:
        record["worker"] = worker
    return encode_records(indices, records)


def rows_of(batch: dict[str, Any]) -> list[tuple[int, Any]]:
    return [(int(i), pickle.loads(blob)) for i, blob in zip(batch["index"], batch["item"],
                                                            strict=True)]


def run_chunk(kernel: Kernel, engine: Any, chunk: list[tuple[int, Any]], *,
              workers: int) -> tuple[list[int], list[dict[str, Any]]]:
    """The kernel's records for `chunk`, wire-ready; a user error that is not a bad file
    (e.g. --out not writable) answers every row not yet done with that one line."""
    indices: list[int] = []
    records: list[dict[str, Any]] = []
    try:
        for index, record in kernel.run(engine, chunk, workers=workers):
            indices.append(index)
            records.append(to_wire(record))
    except OcrnetError as err:
        done = set(indices)
        for index, _ in chunk:
            if index not in done:
                indices.append(index)
                records.append({"error": str(err)})
    return indices, records


def follow_driver(cwd: str | None) -> None:
    """Work in the driver's folder, where it exists on this node (the shared mount), so the
    relative paths a user typed mean the same files in every actor as on the driver."""
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)


def _backend_of(path: Path) -> str | None:
    from ocrnet.package import MANIFEST

    try:
        return json.loads((path / MANIFEST).read_text()).get("backend")
    except (OSError, ValueError):
        return None
