"""`ocrnet serve PKG --ray ADDRESS --replicas R`: the same FastAPI app on Ray Serve.

`serve.ingress` wraps the very app `create_app` returns, so routes, limits, errors and the
batcher are one code path in both modes. Each replica runs the app's lifespan, which opens its
own engine with inference threads sized to the CPUs the replica reserves; Ray Serve's proxy
spreads requests over the replicas (each has its own batcher and `/metrics`; the metrics of
every replica, labelled by replica, are in Ray's metrics export: `ocrnet.serve.ray_metrics`).

Each replica serves only the package the deploying process read: the driver verifies it and
passes its manifest's sha256; a replica whose node has other bytes at that path (manifest or any
file it lists) never becomes ready. `serve_on_ray` deletes the deployment however it ends
(a timeout, a signal, an error), so no replica is left holding the cluster's CPUs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from ocrnet.errors import OcrnetError
from ocrnet.serve.config import HOST, PORT, ServeConfig

APP_NAME = "ocrnet"


class Replica:
    """One Ray Serve replica of the app (the ingress wrapper adds `_asgi_app`)."""

    def check_health(self) -> None:
        """Ray Serve's health probe: a replica whose engine failed to open is replaced."""
        state = getattr(getattr(self, "_asgi_app", None), "state", None)
        service = getattr(state, "service", None)
        if service is not None and service.error:
            raise RuntimeError(service.error)


def _ray() -> Any:
    try:
        import ray
        from ray import serve  # noqa: F401 - fails without the serve extra
    except ImportError:
        raise OcrnetError("`ocrnet serve --ray` needs Ray Serve, which is not installed; install "
                          "it with: pip install 'ocrnet[ray]'") from None
    return ray


def deploy(package: str | os.PathLike[str], config: ServeConfig | None = None, *,
           replicas: int = 1, cpus_per_replica: float | None = None, host: str = HOST,
           port: int = PORT, name: str = APP_NAME) -> str:
    """Deploy `package` on the Ray cluster this process is connected to; return its URL.

    `cpus_per_replica` (default: the cluster's CPUs / `replicas`) is reserved per replica and
    sizes its engine threads (`config.threads`) and worker threads unless those are set. The
    package path must be readable at the same absolute path on every node.
    """
    ray = _ray()
    from ray import serve

    from ocrnet.serve.app import create_app

    if not ray.is_initialized():
        raise OcrnetError("not connected to Ray: call ray.init(...) first")
    config = config or ServeConfig()
    if config.package_sha256 is None:  # what every replica must find at the path
        from ocrnet.fileio import sha256_file
        from ocrnet.package import read_package

        package = read_package(package).path  # every file against the manifest, here
        config = config.replace(package_sha256=sha256_file(package / "ocrnet.json"))
    if cpus_per_replica is None:
        cpus_per_replica = max(1.0, float(ray.cluster_resources().get("CPU", 1)) // replicas)
    whole = max(1, int(cpus_per_replica))
    config = config.replace(threads=config.threads or whole, workers=config.workers or whole)
    app = create_app(package, config)
    # Each replica admits (or refuses with 503) by its own queue, so Ray may hand it that many
    # at once (Ray's default of 5 would starve the batcher); beyond that, Ray's proxy queues a
    # bounded number more and answers 503 itself.
    deployment = serve.deployment(
        name=name, num_replicas=replicas, ray_actor_options={"num_cpus": cpus_per_replica},
        max_ongoing_requests=config.max_queue + (config.max_batch or 8) * 2,
        max_queued_requests=config.max_queue * replicas,
        graceful_shutdown_timeout_s=config.timeout_s + 30,
    )(serve.ingress(app)(Replica))
    # One proxy, on the head node: nodes sharing a machine (tests) would fight over the port.
    serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port})
    serve.run(deployment.bind(), name=name, route_prefix="/", blocking=False)
    return f"http://{host}:{port}"


def wait_ready(url: str, timeout: float = 300.0) -> None:
    """Poll GET /readyz through the proxy until a replica answers 200."""
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/readyz", timeout=5)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as err:
            last = str(err)
        time.sleep(0.5)
    raise OcrnetError(f"the Ray Serve deployment at {url} is not ready after {timeout:g} s: "
                      f"{last}")


class _Stop(Exception):
    """SIGTERM or SIGINT arrived."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop(signum)


def serve_on_ray(package: str | os.PathLike[str], config: ServeConfig | None = None, *,
                 address: str = "auto", replicas: int = 1, cpus_per_replica: float | None = None,
                 host: str = HOST, port: int = PORT) -> int:
    """The CLI's --ray mode: connect (or start a local Ray for `address="local"`), deploy,
    wait until ready, serve until SIGTERM/SIGINT, and delete the app (replicas finish their
    in-flight requests) in every case: a signal during the wait, a timeout or an error too.
    Returns 0 after a signal."""
    ray = _ray()
    # Signals raise from here on, so an early Ctrl-C still reaches the cleanup below.
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ray.init(address=None if address == "local" else address, log_to_driver=False)
        try:
            url = deploy(package, config, replicas=replicas, cpus_per_replica=cpus_per_replica,
                         host=host, port=port)
            wait_ready(url.replace("0.0.0.0", "127.0.0.1"))
            print(f"serving {package} on {url} with {replicas} Ray Serve replica(s); Ctrl-C or "
                  "SIGTERM drains and stops", flush=True)
            threading.Event().wait()  # until a signal raises _Stop
        except _Stop:
            pass
        finally:
            for sig in previous:  # a second signal must not cut the drain short
                signal.signal(sig, signal.SIG_IGN)
            _delete(address == "local")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ray.shutdown()
    return 0


def _delete(shutdown: bool) -> None:
    """Delete the app (waits for the replicas to drain), also when it never deployed."""
    from ray import serve

    try:
        serve.delete(APP_NAME)
        if shutdown:
            serve.shutdown()
    except Exception as err:  # cleanup must not hide why we got here
        print(f"ocrnet serve: deleting the Ray Serve app failed: {err}", file=sys.stderr)
