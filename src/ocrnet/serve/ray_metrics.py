"""On a Ray Serve replica, the app's metrics also go to Ray's metrics export, labelled by replica.

Behind Ray Serve, GET /metrics reaches one replica per request (the proxy picks it), so a
Prometheus scrape of it sees a different replica's counters each time. Each replica therefore
mirrors its events into `ray.serve.metrics` (which adds `deployment`, `replica` and
`application` tags): every node's Ray metrics agent exports them with the prefix `ray_`
(`ray_ocrnet_requests_total{replica="...",code="200"}`, ...), and Prometheus scrapes every node
(the targets Ray lists in `/tmp/ray/prom_metrics_service_discovery.json`) and sums over
`replica` for the service: `sum by (code) (rate(ray_ocrnet_requests_total[1m]))`.
"""

from __future__ import annotations

import sys
from typing import Any


class RayMirror:
    """The events `ocrnet.serve.metrics.Metrics` records, as Ray Serve metrics (counters are
    named without `_total`: Ray's Prometheus export appends it)."""

    def __init__(self, latency_buckets: tuple[float, ...], max_batch: int) -> None:
        from ray.serve import metrics as m

        self.requests = m.Counter("ocrnet_requests", "answered requests by HTTP status",
                                  tag_keys=("code",))
        self.latency = m.Histogram("ocrnet_request_latency_seconds", "request time",
                                   boundaries=list(latency_buckets))
        self.batch_size = m.Histogram("ocrnet_batch_size", "images per inference call",
                                      boundaries=[float(b) for b in range(1, max_batch + 1)])
        self.images = m.Counter("ocrnet_images", "images inferred")
        self.withdrawn = m.Counter("ocrnet_withdrawn", "images withdrawn before inference")
        self.queue_depth = m.Gauge("ocrnet_queue_depth", "requests admitted, not yet inferring")


def replica_id() -> str | None:
    """This Ray Serve replica's id, or None outside one (Ray is never imported for it)."""
    if "ray.serve" not in sys.modules:
        return None
    from ray import serve

    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # RayServeException: not inside a replica
        return None


def ray_mirror(latency_buckets: tuple[float, ...], max_batch: int) -> Any:
    """A `RayMirror` inside a Ray Serve replica, else None."""
    return RayMirror(latency_buckets, max_batch) if replica_id() is not None else None
