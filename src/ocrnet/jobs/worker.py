"""The engine actor: the base class of the jobs' Ray Data callable classes.

Each actor works in the driver's folder, takes this node's copy of the shipped model, opens it
once with its threads sized to the CPUs Ray gave it (OpenVINO pinning off where actors share a
node) and tags every record it sends with where it ran and when its task started and ended.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ocrnet.errors import OcrnetError
from ocrnet.jobs.records import encode_records
from ocrnet.jobs.shipping import ShippedModel, materialize


class EngineWorker:
    """Opens the shipped model once per actor, threads sized to the actor's CPUs.

    A user error while opening (a corrupt transfer, a package this node cannot run) does not
    kill the actor, which Ray would only start again: it is kept in `error`, and the subclass
    answers every row with it, so the driver stops with that one line.
    """

    def __init__(self, model: ShippedModel, *, threads: int, pinning: bool | None,
                 device: str, trust_checkpoint: bool, trust_package: bool,
                 cwd: str | None = None) -> None:
        import ray

        follow_driver(cwd)
        node_id = ray.get_runtime_context().get_node_id()
        self.worker: dict[str, Any] = {"node": node_id, "host": socket.gethostname(),
                                       "pid": os.getpid()}
        self.error: str | None = None
        try:
            self._open(model, node_id, threads, pinning, device, trust_checkpoint,
                       trust_package)
        except OcrnetError as err:
            self.error = f"{err} (Ray node {node_id[:12]}, {self.worker['host']})"

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

    def run(self, batch: dict[str, Any]) -> tuple[list[int], list[dict[str, Any]]]:
        """The rows' indices and one record per image (the subclass's job)."""
        raise NotImplementedError

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Ray Data's entry point: `run`, each record tagged with this actor and the task's
        start and end (the driver derives the actors' idle time between tasks from them)."""
        start = time.time()
        if self.error is not None:
            indices = [int(i) for i in batch["index"]]
            records: list[dict[str, Any]] = [{"error": self.error} for _ in indices]
        else:
            indices, records = self.run(batch)
        task = [start, time.time()]
        for record in records:
            record.update(worker=self.worker, task=task)
        return encode_records(indices, records)


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
