"""Run the app on uvicorn in this process until SIGTERM/SIGINT, then drain and return.

uvicorn's graceful shutdown stops accepting, lets in-flight requests finish and then runs the
app's lifespan exit, which infers whatever is still queued and closes the engine.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from ocrnet.serve.config import GRACEFUL_SHUTDOWN_S, HOST, KEEP_ALIVE_S, PORT, ServeConfig

log = logging.getLogger("ocrnet.serve")


def serve_forever(package: str | os.PathLike[str], config: ServeConfig | None = None, *,
                  host: str = HOST, port: int = PORT, access_log: bool = False,
                  log_level: str = "info") -> int:
    """Serve `package` on http://host:port until a signal; returns 0 after a clean drain."""
    import uvicorn

    from ocrnet.serve.app import create_app

    cfg = config or ServeConfig()
    app = create_app(package, cfg)
    _configure_logging(log_level)
    print(f"serving {package} on http://{host}:{port} (POST /v1/segment, GET /v1/model, "
          "/readyz, /metrics); Ctrl-C or SIGTERM drains and stops", flush=True)
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, access_log=access_log, log_level=log_level,
        # One process, one event loop: the engine's own threads use the cores. httptools and
        # uvloop are used when installed (uvicorn[standard]), else the pure-Python fallbacks.
        # Keep-alive and graceful shutdown are bounded; beyond --max-connections open
        # connections uvicorn answers 503 itself (a slow client's body is bounded by the
        # app's --read-timeout-s, so a connection cannot be held forever by one).
        workers=1, timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=int(max(GRACEFUL_SHUTDOWN_S, cfg.timeout_s + 30)),
        limit_concurrency=cfg.max_connections, lifespan="on"))
    received: list[int] = []
    # uvicorn catches SIGTERM/SIGINT to shut down gracefully, then re-raises the signal to the
    # handler it found. Ours notes it, so a drained shutdown returns 0 instead of dying by it.
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        return 1  # the port was taken or the app failed to start: uvicorn said why
    log.info("ocrnet serve: stopped%s", f" by signal {received[0]}" if received else "")
    return 0


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("ocrnet.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
