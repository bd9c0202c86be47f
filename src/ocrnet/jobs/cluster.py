"""Connecting to Ray, sizing the engine actors, shipping the model, and collecting results.

* `connect(address)`: `local` starts a Ray instance on this machine, `auto` joins the cluster
  this machine belongs to (Ray's meaning), anything else is a cluster address (`HOST:PORT`,
  `ray://HOST:PORT`). A process that already called `ray.init` keeps its connection. Ray not
  installed or an address nobody answers on is one `OcrnetError` line.
* `plan_actors`: how many actors and how many engine threads each (`--workers`, `--threads`);
  the default is one actor per node using that node's cores.
* `ship_model`: the package (or checkpoint / ONNX file) goes through Ray's object store, never a
  shared path; each node unpacks it once into a local cache and checks its sha256 on arrival.
* `EngineWorker`: the base of the jobs' callable classes, opening the shipped model once per
  actor with its threads set to the CPUs Ray gave the actor.
* `collect`: the driver's loop over the job's output rows: one progress bar, each image
  counted once however often Ray retried the task that produced it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrnet.errors import OcrnetError, PackageError
from ocrnet.progress import progress_bar

INSTALL_HINT = "pip install 'ocrnet[ray]'"
#: Images per Ray task = package batch x this: enough to overlap decoding with inference inside
#: the actor and to amortise Ray's per-task cost, small enough that a killed actor redoes little.
BATCHES_PER_TASK = 4
_MAX_BLOCKS = 20_000
_PROBE_TIMEOUT_S = 5.0
_WAIT_FOR_ACTORS_S = 600
_CACHE = "ocrnet-ray-models"


def require_ray() -> Any:
    """The `ray` module, or `OcrnetError` naming the extra to install."""
    try:
        import ray
        import ray.data  # the jobs need Ray Data, not only the core
    except ImportError as err:
        raise OcrnetError(f"--ray needs Ray (Ray Data), which is not installed ({err.name or err}"
                          f"); install it with: {INSTALL_HINT}") from None
    return ray


# --- connecting --------------------------------------------------------------------------------
@contextlib.contextmanager
def connect(address: str) -> Iterator[Any]:
    """Join (or start) the Ray cluster at `address` for the duration of the block.

    A Ray instance this call started is shut down at the end; an existing connection (a
    session that called `ray.init` itself, e.g. a test fixture) is used as it is and kept.
    """
    ray = require_ray()
    address = str(address).strip()
    if not address:
        raise OcrnetError("--ray needs an ADDRESS: local, auto or HOST:PORT of a Ray cluster")
    if address not in ("local", "auto"):
        _probe(address)
    if ray.is_initialized():
        _configure_data(ray)
        yield ray
        return
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                              "configure_logging": True}
    if address == "local":
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OcrnetError(f"cannot join a Ray cluster at {address!r}: {first}; start one with "
                          "`ray start --head` (or pass --ray local)") from None
    try:
        _configure_data(ray)
        yield ray
    finally:
        ray.shutdown()


def _probe(address: str) -> None:
    """Fail in seconds, with one line, where nothing listens at HOST:PORT (Ray would retry)."""
    host_port = address.removeprefix("ray://")
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise OcrnetError(f"Ray address {address!r} is not local, auto, HOST:PORT or "
                          "ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_PROBE_TIMEOUT_S):
            pass
    except OSError as err:
        raise OcrnetError(f"cannot reach a Ray cluster at {address!r}: "
                          f"{err.strerror or err}; start one there with `ray start --head "
                          f"--port {port}` or pass --ray local") from None


def _configure_data(ray: Any) -> None:
    """One progress bar (ours, on the driver): Ray Data's own bars and banners off."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    # Start every actor (model opened) before the first task: work then spreads over all of
    # them instead of the first one ready taking a short job alone.
    ctx.wait_for_min_actors_s = _WAIT_FOR_ACTORS_S
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ... including the warning that says the bars are off.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


# --- sizing --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActorPlan:
    """`workers` engine actors of `threads` CPUs each; `pinning` False where actors may share
    a node (OpenVINO would pin two actors' threads to the same cores), None to leave it."""

    workers: int
    threads: int
    pinning: bool | None
    node_cpus: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"workers": self.workers, "threads_per_worker": self.threads,
                "cpu_pinning": "off" if self.pinning is False else "engine default",
                "nodes": len(self.node_cpus), "cluster_cpus": sum(self.node_cpus)}


def plan_actors(ray: Any, workers: int | None, threads: int | None) -> ActorPlan:
    """Default: one actor per node using all its cores; `--threads` alone: as many actors of
    that size as fit; `--workers` alone: the cluster's CPUs shared out among them."""
    node_cpus = tuple(sorted(int(n["Resources"].get("CPU", 0)) for n in ray.nodes()
                             if n.get("Alive") and n["Resources"].get("CPU", 0) >= 1))
    if not node_cpus:
        raise OcrnetError("the Ray cluster has no node with a CPU to run engines on")
    for value, name in ((workers, "workers"), (threads, "threads")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise OcrnetError(f"{name} must be a positive integer, got {value!r}")
    if threads is None:
        if workers is None or workers <= len(node_cpus):
            threads = node_cpus[0]  # fits any node: at most one actor per node when all alike
        else:
            threads = max(1, min(node_cpus[0], sum(node_cpus) // workers))
    fits = sum(cpus // threads for cpus in node_cpus)
    if workers is None:
        workers = fits
    if fits < workers or fits == 0:
        raise OcrnetError(
            f"{workers} actor(s) of {threads} CPU(s) do not fit this Ray cluster (nodes with "
            f"{', '.join(map(str, node_cpus))} CPUs: {fits} fit); lower --workers or --threads")
    sharing = any(cpus // threads > 1 for cpus in node_cpus)
    return ActorPlan(workers, threads, False if sharing else None, node_cpus)


# --- shipping the model ------------------------------------------------------------------------
@dataclass(frozen=True)
class ShippedModel:
    """A model in Ray's object store: `files` maps relative paths to bytes; `digest` is the
    sha256 of the package manifest (which lists every file's sha256) or of the single file."""

    name: str
    source: str
    is_package: bool
    digest: str
    files: Any = field(repr=False)  # ray.ObjectRef -> dict[str, bytes]
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"model": self.source, "sha256": self.digest, "bytes": self.size,
                "shipped": "ray object store"}


def ship_model(ray: Any, path: str | os.PathLike[str]) -> ShippedModel:
    """Read `path` (a package folder, checked here first, or one .pth/.onnx file) into Ray's
    object store, so nodes without the driver's filesystem can open it."""
    from ocrnet.package import MANIFEST, read_package

    src = Path(path)
    files: dict[str, bytes] = {}
    if src.is_dir():
        package = read_package(src)
        for name in [MANIFEST, *package.files]:
            files[name] = (src / name).read_bytes()
        for name, digest in package.files.items():  # what is shipped is what was verified
            if hashlib.sha256(files[name]).hexdigest() != digest:
                raise PackageError(f"package {src} changed while it was being read ({name}); "
                                   "run the job again")
        digest = hashlib.sha256(files[MANIFEST]).hexdigest()
    elif src.is_file():
        try:
            files[src.name] = src.read_bytes()
        except OSError as err:
            raise OcrnetError(f"cannot read model {src}: {err.strerror or err}") from None
        digest = hashlib.sha256(files[src.name]).hexdigest()
    else:
        raise OcrnetError(f"no model at {src}: expected an engine package folder, a .pth "
                          "checkpoint or an .onnx file")
    size = sum(len(b) for b in files.values())
    return ShippedModel(src.name, str(path), src.is_dir(), digest, ray.put(files), size)


def materialize(model: ShippedModel, node_id: str) -> tuple[Path, bool]:
    """This node's copy of `model` (fetched from the object store once per node and checked);
    returns its path and whether this call fetched it."""
    import ray

    from ocrnet.package import MANIFEST

    root = Path(tempfile.gettempdir()) / _CACHE
    local_name = _local_name(model)
    final = root / _entry(model, node_id)
    target = final / local_name
    key = MANIFEST if model.is_package else None
    if (final / ".complete").is_file():
        return target, False
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = ray.get(model.files)
    check = files[key] if key else files[model.name]
    got = hashlib.sha256(check).hexdigest()
    if got != model.digest:
        raise PackageError(f"model {model.source} arrived on node {node_id[:12]} with sha256 "
                           f"{got[:16]}..., expected {model.digest[:16]}...; not opening it")
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        base = stage / local_name
        for rel, data in files.items():
            out = base / rel if model.is_package else base
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        (stage / ".complete").write_text(model.digest + "\n")
        try:
            os.rename(stage, final)
        except OSError:  # another actor on this node got there first: use its copy
            shutil.rmtree(stage, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return target, True


def _local_name(model: ShippedModel) -> str:
    # A single file keeps its suffix: it is how `open_model` tells a checkpoint from ONNX.
    return "package" if model.is_package else "model" + Path(model.name).suffix


def _entry(model: ShippedModel, node_id: str) -> str:
    """A node's cache entry: by content, not name (one copy however the package is called)."""
    return f"{node_id[:12]}-{model.digest[:16]}-{_local_name(model)}"


def release_model(ray: Any, model: ShippedModel) -> None:
    """Remove every live node's copy of `model` (the job is over; the next one ships again).

    One zero-CPU task pinned to each node, so it runs even while actors hold every CPU.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def remove(name: str) -> None:
        shutil.rmtree(Path(tempfile.gettempdir()) / _CACHE / name, ignore_errors=True)

    refs = [remove.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                node["NodeID"], soft=False)).remote(_entry(model, node["NodeID"]))
            for node in ray.nodes() if node.get("Alive")]
    with contextlib.suppress(Exception):  # best effort: a copy left in /tmp harms nothing
        ray.get(refs, timeout=60)


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


def map_options(plan: ActorPlan, device: str) -> dict[str, Any]:
    """`map_batches` keyword arguments: the actor pool and its CPUs.

    Fault tolerance is Ray Data's default for actor pools: an actor whose process dies is
    restarted and its unfinished tasks are retried (`max_restarts=-1`, `max_task_retries=-1`;
    setting them through `map_batches` is deprecated as of Ray 2.60).
    """
    import ray.data

    opts: dict[str, Any] = {
        # One task at a time per actor: the next goes to whichever actor is free, not to the
        # one beside the block (the rows are a few bytes; locality buys nothing here), and
        # no actor sits on queued work at the end of a job while another idles.
        "compute": ray.data.ActorPoolStrategy(size=plan.workers, max_tasks_in_flight_per_actor=1),
        "num_cpus": plan.threads,
        "batch_format": "numpy",
    }
    if device.startswith("cuda"):
        opts["num_gpus"] = 1
    return opts


def images_per_task(total: int, batch_size: int, workers: int) -> int:
    """Package batches of `BATCHES_PER_TASK`, fewer where that would leave actors idle."""
    batches = math.ceil(total / batch_size)
    return batch_size * max(1, min(BATCHES_PER_TASK, math.ceil(batches / max(1, workers))))


def rows_dataset(ray: Any, rows: list[dict[str, Any]], images_per_task: int) -> Any:
    """The job's input: one row per image, in blocks of one task's worth."""
    blocks = max(1, min(len(rows), _MAX_BLOCKS, math.ceil(len(rows) / images_per_task)))
    return ray.data.from_items(rows, override_num_blocks=blocks)


# --- collecting ----------------------------------------------------------------------------------
@dataclass
class Collected:
    """Each image's record by its index (first arrival wins), and which worker did what."""

    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    repeats: int = 0
    workers: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    tasks: dict[tuple[str, int], set[tuple[float, float]]] = field(default_factory=dict)
    first_at: float | None = None  # perf_counter when the first and last outputs arrived
    first_n: int = 0  # images in the first output batch
    last_at: float | None = None

    def rates(self) -> dict[str, float | None]:
        """img/s over the whole job (actor start included) and after the first output batch
        (steady state: what adding images costs)."""
        n = len(self.records)
        span = (self.last_at or 0.0) - (self.first_at or 0.0)
        steady = (n - self.first_n) / span if span > 0 and n > self.first_n else None
        return {"images_per_second": round(n / self.seconds, 3) if self.seconds else None,
                "steady_images_per_second": round(steady, 3) if steady else None,
                "dispatch_overhead_ms_per_image": self.overhead_ms_per_image()}

    def workers_json(self) -> list[dict[str, Any]]:
        """Each actor: where it ran, its engine settings, images, busy and idle seconds."""
        out = []
        for key, worker in sorted(self.workers.items()):
            tasks = sorted(self.tasks.get(key, ()))
            if tasks:
                busy = sum(end - start for start, end in tasks)
                span = max(end for _, end in tasks) - tasks[0][0]
                worker = {**worker, "tasks": len(tasks), "busy_s": round(busy, 3),
                          "idle_between_tasks_s": round(max(0.0, span - busy), 3)}
            out.append(worker)
        return out

    def overhead_ms_per_image(self) -> float | None:
        """Actor time spent waiting for the next task, per image: what Ray's dispatch costs
        (from each actor's first task start to its last task end, minus its task time)."""
        idle = sum(w.get("idle_between_tasks_s", 0.0) for w in self.workers_json())
        images = sum(w["images"] for w in self.workers.values())
        return round(idle / images * 1000, 2) if images else None


def collect(ds: Any, total: int, *, desc: str, progress: bool,
            on_record: Callable[[int, dict[str, Any]], str | None]) -> Collected:
    """Stream the job's output rows (`index`, `record` JSON) into a `Collected`.

    A task Ray retried after its actor died may deliver an image again: only the first record
    of each index counts, so nothing is double-counted. `on_record` sees each new record (it
    may raise to stop the job) and returns the progress bar's postfix, or None.
    """
    out = Collected()
    start = time.perf_counter()
    with progress_bar(total, progress, desc) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for index, text in zip(batch["index"], batch["record"], strict=True):
                i = int(index)
                if i in out.records:
                    out.repeats += 1
                    continue
                record = json.loads(text)
                out.records[i] = record
                worker = record.pop("worker", None)
                task = record.pop("task", None)
                if worker:
                    key = (worker["node"], worker["pid"])
                    seen = out.workers.setdefault(key, {**worker, "images": 0})
                    seen["images"] += 1
                    if task:
                        out.tasks.setdefault(key, set()).add(tuple(task))
                postfix = on_record(i, record)
                if postfix:
                    bar.set_postfix_str(postfix, refresh=False)
                bar.update(1)
            out.last_at = time.perf_counter()
            if out.first_at is None:
                out.first_at, out.first_n = out.last_at, len(out.records)
    out.seconds = time.perf_counter() - start
    missing = total - len(out.records)
    if missing:  # a Ray bug or a lost block, never silently a shorter result
        raise OcrnetError(f"the Ray job returned {len(out.records)} of {total} images; "
                          "run it again")
    return out


def summary_line(info: dict[str, Any]) -> str:
    """One line about a finished Ray job, from its `ray` block."""
    nodes = len({w["node"] for w in info.get("workers_used", [])})
    rate = info.get("images_per_second")
    actors = (f"{info['workers']} actor(s) x {info['threads_per_worker']} thread(s), "
              if "workers" in info and "threads_per_worker" in info else "")
    return (f"on Ray ({info.get('address')}): {actors}work on {nodes} node(s)"
            + (f", {rate:.2f} img/s" if rate else ""))


def encode_records(indices: list[int], records: list[dict[str, Any]]) -> dict[str, Any]:
    """A `map_batches` output batch: int64 indices and one JSON record per image."""
    import numpy as np

    return {"index": np.asarray(indices, dtype=np.int64),
            "record": np.asarray([json.dumps(r) for r in records], dtype=object)}
