"""Connecting to Ray and sizing the job: the driver's side of `predict` / `eval` on Ray.

* `connect(address)`: `local` starts a Ray instance on this machine, `auto` joins the cluster
  this machine belongs to (Ray's meaning), anything else is a cluster address (`HOST:PORT`,
  `ray://HOST:PORT`). A process that already called `ray.init` keeps its connection. Ray not
  installed or an address nobody answers on is one `OcrnetError` line.
* `plan_actors`: how many actors and how many engine threads each (`--workers`, `--threads`);
  the default is one actor per node using that node's cores.
* `map_options`, `images_per_task`, `rows_dataset`: the Ray Data pipeline's shape.

The model travels in `shipping.py`, the actors are `worker.py`, the rows they send back and
the driver's loop over them are `records.py`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ocrnet.errors import OcrnetError

INSTALL_HINT = "pip install 'ocrnet[ray]'"
#: Images per Ray task = package batch x this: enough to overlap decoding with inference inside
#: the actor and to amortise Ray's per-task cost, small enough that a killed actor redoes little.
BATCHES_PER_TASK = 4
_MAX_BLOCKS = 20_000
_PROBE_TIMEOUT_S = 5.0
_WAIT_FOR_ACTORS_S = 600


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
    check_address(address)
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


def check_address(address: str) -> None:
    """Fail in seconds, before any other work: no Ray, no address, or nobody at HOST:PORT."""
    require_ray()
    if not address:
        raise OcrnetError("--ray needs an ADDRESS: local, auto or HOST:PORT of a Ray cluster")
    if address not in ("local", "auto"):
        probe(address)


def probe(address: str) -> None:
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
def summary_line(info: dict[str, Any]) -> str:
    """One line about a finished Ray job, from its `ray` block."""
    nodes = len({w["node"] for w in info.get("workers_used", [])})
    rate = info.get("images_per_second")
    actors = (f"{info['workers']} actor(s) x {info['threads_per_worker']} thread(s), "
              if "workers" in info and "threads_per_worker" in info else "")
    return (f"on Ray ({info.get('address')}): {actors}work on {nodes} node(s)"
            + (f", {rate:.2f} img/s" if rate else ""))
