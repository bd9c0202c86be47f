"""`ocrnet serve PKG`: an HTTP segmentation service (uvicorn here, or Ray Serve with --ray)."""

from __future__ import annotations

import argparse

from ocrnet.cli.options import (
    add_device,
    add_resize,
    add_scale,
    non_negative_float,
    positive_float,
    positive_int,
)
from ocrnet.serve import config as c


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="HTTP service: POST /v1/segment, Open Inference Protocol v2, a page at /",
        description="Serve one engine package over HTTP: POST /v1/segment?format=labels|"
                    "labelids|color|overlay|json answers exactly what `ocrnet predict` writes; "
                    "GET /v1/model, /healthz, /readyz, /metrics; the Open Inference Protocol v2 "
                    "(KServe v2 / Triton REST, binary tensor data) under /v2; a page to try it "
                    "at /. SIGTERM/SIGINT drain and exit 0.")
    p.add_argument("package", metavar="PKG", help="engine package folder (ocrnet build)")
    p.add_argument("--host", default=c.HOST, help=f"address to bind (default: {c.HOST})")
    p.add_argument("--port", type=positive_int, default=c.PORT,
                   help=f"port (default: {c.PORT})")
    _add_batching_and_limits(p)
    p.add_argument("--threads", type=positive_int,
                   help="the engine's inference threads (default: the engine's; with --ray: "
                        "the replica's CPUs)")
    p.add_argument("--workers", type=positive_int,
                   help="decode / preprocess / encode threads (default: min(4, CPUs))")
    add_scale(p)
    add_resize(p)
    add_device(p)
    p.add_argument("--trust-package", action="store_true",
                   help="allow packages that hold native code (AOTInductor)")
    p.add_argument("--model-name",
                   help="the model's name in the Open Inference Protocol v2 URLs "
                        "(/v2/models/NAME/infer; default: the package folder's name)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    _add_ray(p)
    p.set_defaults(handler=run)


def _add_batching_and_limits(p: argparse.ArgumentParser) -> None:
    """How requests are batched, and the limits that answer 503/504/413/408 instead of
    letting a client exhaust the server."""
    p.add_argument("--max-batch", type=positive_int,
                   help="images per inference call (default: the package's static batch, "
                        f"padded; {c.DYNAMIC_MAX_BATCH} for a dynamic batch)")
    p.add_argument("--max-wait-ms", type=non_negative_float,
                   help="how long a batch's first image waits for more (default: "
                        f"{c.MAX_WAIT_FRACTION * 100:g}%% of one warm-up inference, within "
                        f"{c.MAX_WAIT_BOUNDS_MS[0]:g}..{c.MAX_WAIT_BOUNDS_MS[1]:g} ms)")
    p.add_argument("--max-queue", type=positive_int, default=c.MAX_QUEUE,
                   help="requests waiting for inference before new ones get 503 "
                        f"(default: {c.MAX_QUEUE})")
    p.add_argument("--timeout-s", type=positive_float, default=c.TIMEOUT_S,
                   help="longest wait before inference starts, then 504 "
                        f"(default: {c.TIMEOUT_S:g})")
    p.add_argument("--max-body-mb", type=positive_float, default=c.MAX_BODY_MB,
                   help=f"largest request body, else 413 (default: {c.MAX_BODY_MB:g})")
    p.add_argument("--max-pixels", type=positive_int, default=c.MAX_PIXELS,
                   help="largest image (width x height, read from the header before decoding), "
                        f"else 413 (default: {c.MAX_PIXELS:,})")
    p.add_argument("--read-timeout-s", type=positive_float,
                   help="longest a request body may take to arrive, then 408 and the connection "
                        f"is closed (default: {c.READ_TIMEOUT_BASE_S:g} s + "
                        f"{c.READ_TIMEOUT_S_PER_MB:g} s per MB of its Content-Length, else of "
                        "--max-body-mb)")
    p.add_argument("--max-inflight-mb", type=positive_float,
                   help="memory budget of admitted requests (bodies, decoded images, the "
                        "labels' working set, answers; counted before allocating), else 503 "
                        "with Retry-After (default: half the machine's or container's memory)")
    p.add_argument("--max-connections", type=positive_int, default=c.MAX_CONNECTIONS,
                   help="open connections served at once, else 503 (default: "
                        f"{c.MAX_CONNECTIONS})")


def _add_ray(p: argparse.ArgumentParser) -> None:
    """`--ray`: the same app on Ray Serve replicas."""
    ray = p.add_argument_group("Ray Serve (scale out)")
    ray.add_argument("--ray", metavar="ADDRESS",
                     help="deploy on Ray Serve instead: a cluster address, 'auto', or 'local' "
                          "(start one here); the package path must be readable on every node")
    ray.add_argument("--replicas", type=positive_int, default=1,
                     help="replicas, one engine each (default: 1)")
    ray.add_argument("--cpus-per-replica", type=positive_float,
                     help="CPUs reserved per replica (default: the cluster's CPUs / replicas)")


def run(args: argparse.Namespace) -> int:
    from ocrnet.package import read_package
    from ocrnet.serve.config import ServeConfig, require_serve

    require_serve()
    read_package(args.package)  # a missing or tampered package: one line, before any server
    config = ServeConfig(
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        timeout_s=args.timeout_s, max_body_mb=args.max_body_mb, max_pixels=args.max_pixels,
        threads=args.threads, workers=args.workers, device=args.device, scale=args.scale,
        resize=args.resize, trust_package=args.trust_package,
        read_timeout_s=args.read_timeout_s, max_inflight_mb=args.max_inflight_mb,
        max_connections=args.max_connections, model_name=args.model_name)
    if args.ray:
        from ocrnet.serve.ray_serve import serve_on_ray

        return serve_on_ray(args.package, config, address=args.ray, replicas=args.replicas,
                            cpus_per_replica=args.cpus_per_replica, host=args.host,
                            port=args.port)
    from ocrnet.serve.server import serve_forever

    return serve_forever(args.package, config, host=args.host, port=args.port,
                         access_log=args.access_log)
