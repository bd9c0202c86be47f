"""Prometheus metrics of one service, in its own registry (two apps in a process never clash).

Names follow Prometheus conventions (`_total` counters, `_seconds` histograms) and Triton's
choices of what to count: requests by status, request latency, batch sizes, queue depth, and
inference time; `ocrnet_images_per_second` is a convenience gauge over the last 10 s (prefer
`rate(ocrnet_images_total[1m])` in a dashboard).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

_WINDOW_S = 10.0
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Counters, histograms and gauges of one service (prometheus_client, imported here)."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, max_batch: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("ocrnet_requests", "answered requests (all but /healthz, "
                                "/readyz, /metrics) by HTTP status (499: the client left "
                                "first)", ["code"], registry=r)
        self.latency = Histogram("ocrnet_request_latency_seconds", "request time from arrival "
                                 "to answer (the requests counted above)",
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("ocrnet_batch_size", "images per inference call (padding "
                                    "excluded)", buckets=tuple(range(1, max_batch + 1)),
                                    registry=r)
        self.inference = Histogram("ocrnet_inference_seconds", "time of one inference call",
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.images = Counter("ocrnet_images", "images inferred", registry=r)
        self.withdrawn = Counter("ocrnet_withdrawn", "images withdrawn from the queue before "
                                 "inference (past --timeout-s, or the client left)", registry=r)
        self.queue_depth = Gauge("ocrnet_queue_depth", "requests admitted and not yet "
                                 "inferring (decoding, preprocessing or queued)", registry=r)
        self.in_flight = Gauge("ocrnet_requests_in_flight", "requests being handled (those "
                               "counted above)", registry=r)
        self.ready = Gauge("ocrnet_ready", "1 once the engine is loaded and warmed up",
                           registry=r)
        rate = Gauge("ocrnet_images_per_second", f"images inferred per second over the last "
                     f"{_WINDOW_S:g} s", registry=r)
        rate.set_function(self._rate)
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, int]] = deque()
        from ocrnet.serve.ray_metrics import ray_mirror, replica_id

        self.replica = replica_id()  # None outside Ray Serve
        self._ray = ray_mirror(_LATENCY_BUCKETS, max_batch) if self.replica else None

    def batch(self, images: int, seconds: float) -> None:
        """Record one inference call (called from the inference thread)."""
        self.batch_size.observe(images)
        self.inference.observe(seconds)
        self.images.inc(images)
        with self._lock:
            self._recent.append((time.monotonic(), images))
        if self._ray is not None:
            self._ray.batch_size.observe(images)
            self._ray.images.inc(images)

    def answered(self, code: int, seconds: float) -> None:
        self.requests.labels(code=str(code)).inc()
        self.latency.observe(seconds)
        if self._ray is not None:
            self._ray.requests.inc(tags={"code": str(code)})
            self._ray.latency.observe(seconds)

    def withdraw(self) -> None:
        """One queued image withdrawn before inference."""
        self.withdrawn.inc()
        if self._ray is not None:
            self._ray.withdrawn.inc()

    def queued(self, depth: int) -> None:
        self.queue_depth.set(depth)
        if self._ray is not None:
            self._ray.queue_depth.set(depth)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def _rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0][0] < now - _WINDOW_S:
                self._recent.popleft()
            return sum(n for _, n in self._recent) / _WINDOW_S


#: Paths whose answers are not counted (probes and scrapes would drown the requests).
UNCOUNTED = frozenset({"/healthz", "/readyz", "/metrics"})


class CountAnswers:
    """ASGI middleware: every answered HTTP request (probes aside) in `ocrnet_requests_total`
    by status, in the latency histogram and the in-flight gauge, whoever answered it: a
    route, FastAPI's own validation (422), the router (404, 405) or a crash (500). A request
    whose client left before any answer was sent counts as 499.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        service = getattr(getattr(scope.get("app"), "state", None), "service", None)
        if scope["type"] != "http" or service is None or scope.get("path") in UNCOUNTED:
            await self.app(scope, receive, send)
            return
        metrics: Metrics = service.metrics
        status = [0]

        async def record_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        start = time.monotonic()
        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, record_status)
        except BaseException:
            status[0] = status[0] or (499 if _cancelled() else 500)
            raise
        finally:
            metrics.in_flight.dec()
            metrics.answered(status[0] or 499, time.monotonic() - start)


def _cancelled() -> bool:
    """Whether the exception being handled is a cancellation (the client left)."""
    import sys

    return isinstance(sys.exc_info()[1], asyncio.CancelledError)
