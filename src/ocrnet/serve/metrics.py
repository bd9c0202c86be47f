"""Prometheus metrics of one service, in its own registry (two apps in a process never clash).

Names follow Prometheus conventions (`_total` counters, `_seconds` histograms) and Triton's
choices of what to count: requests by status, request latency, batch sizes, queue depth, and
inference time; `ocrnet_images_per_second` is a convenience gauge over the last 10 s (prefer
`rate(ocrnet_images_total[1m])` in a dashboard).
"""

from __future__ import annotations

import threading
import time
from collections import deque

_WINDOW_S = 10.0
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Counters, histograms and gauges of one service (prometheus_client, imported here)."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, max_batch: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("ocrnet_requests", "POST /v1/segment answers by HTTP status "
                                "(499: the client left first)", ["code"], registry=r)
        self.latency = Histogram("ocrnet_request_latency_seconds", "POST /v1/segment time from "
                                 "arrival to answer", buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("ocrnet_batch_size", "images per inference call (padding "
                                    "excluded)", buckets=tuple(range(1, max_batch + 1)),
                                    registry=r)
        self.inference = Histogram("ocrnet_inference_seconds", "time of one inference call",
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.images = Counter("ocrnet_images", "images inferred", registry=r)
        self.queue_depth = Gauge("ocrnet_queue_depth", "requests admitted and not yet "
                                 "inferring (decoding, preprocessing or queued)", registry=r)
        self.in_flight = Gauge("ocrnet_requests_in_flight", "POST /v1/segment requests being "
                               "handled", registry=r)
        self.ready = Gauge("ocrnet_ready", "1 once the engine is loaded and warmed up",
                           registry=r)
        rate = Gauge("ocrnet_images_per_second", f"images inferred per second over the last "
                     f"{_WINDOW_S:g} s", registry=r)
        rate.set_function(self._rate)
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, int]] = deque()

    def batch(self, images: int, seconds: float) -> None:
        """Record one inference call (called from the inference thread)."""
        self.batch_size.observe(images)
        self.inference.observe(seconds)
        self.images.inc(images)
        with self._lock:
            self._recent.append((time.monotonic(), images))

    def answered(self, code: int, seconds: float) -> None:
        self.requests.labels(code=str(code)).inc()
        self.latency.observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def _rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0][0] < now - _WINDOW_S:
                self._recent.popleft()
            return sum(n for _, n in self._recent) / _WINDOW_S
