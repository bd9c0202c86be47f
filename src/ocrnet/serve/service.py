"""`Service`: one opened package behind the serve app's routes.

It owns everything stateful: the engine (opened and warmed up on a loader thread), the
`Batcher` and its inference thread, the worker threads that decode, preprocess and encode, the
admission count behind `max_queue`, and the metrics. The app's lifespan makes one per app.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ocrnet import defaults
from ocrnet.errors import ArgumentError
from ocrnet.serve.config import DYNAMIC_MAX_BATCH, ServeConfig
from ocrnet.serve.errors import HttpError

if TYPE_CHECKING:
    from ocrnet.engines.base import Engine
    from ocrnet.serve.batching import Batcher
    from ocrnet.serve.metrics import Metrics

log = logging.getLogger("ocrnet.serve")


@dataclass
class _Prepared:
    image: np.ndarray  # (3, h, w) float32
    size: tuple[int, int]  # original (H, W)
    original: np.ndarray | None  # decoded BGR, kept for overlays


class _Ticket:
    """One admitted request's place in the queue, given back exactly once."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._held = True

    def release(self) -> None:
        with self._service._lock:
            if self._held:
                self._held = False
                self._service._waiting -= 1
                self._service.metrics.queue_depth.set(self._service._waiting)


class Service:
    """One opened package: engine, batcher, worker threads and metrics of one app."""

    def __init__(self, package: Path, config: ServeConfig) -> None:
        from ocrnet.package import read_package
        from ocrnet.serve.metrics import Metrics

        self.package = package
        self.config = config
        self.manifest = read_package(package, verify=False).meta
        self.static_batch, self.static_size = static_shape(self.manifest)
        self.max_batch = resolve_max_batch(config.max_batch, self.static_batch, package)
        self.metrics: Metrics = Metrics(self.max_batch)
        self.engine: Engine | None = None
        self.batcher: Batcher | None = None
        self.scale: tuple[int, int] | float | None = None
        self.max_wait_s: float | None = None
        self.error: str | None = None
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._waiting = 0
        self._batch_s = 1.0  # running estimate of one inference call, for Retry-After
        self._pool = ThreadPoolExecutor(config.workers or min(4, os.cpu_count() or 1),
                                        thread_name_prefix="ocrnet-serve")
        self._loader = threading.Thread(target=self._load, name="ocrnet-load", daemon=True)
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._loader.start()

    def _load(self) -> None:
        try:
            from ocrnet.engines import open_model
            from ocrnet.serve.batching import Batcher

            engine = open_model(self.package, device=self.config.device,
                                threads=self.config.threads,
                                trust_package=self.config.trust_package)
            self.engine = engine
            # predict's own default: a static package's size, else mmseg's 2048x1024.
            self.scale = engine.default_scale(self.config.scale)
            t0 = time.perf_counter()
            self._warm_up(engine)
            self._batch_s = time.perf_counter() - t0
            self.max_wait_s = self.config.max_wait_s(self._batch_s)
            self.batcher = Batcher(self._infer, max_batch=self.max_batch,
                                   max_wait_s=self.max_wait_s,
                                   pad_to=self.static_batch, on_batch=self._on_batch)
            self.batcher.start()
        except Exception as err:  # reported by /healthz and /readyz
            self.error = f"cannot open {self.package}: {err}"
            log.error("ocrnet serve: %s", self.error)
            return
        self.metrics.ready.set(1)
        self.ready.set()
        log.info("ocrnet serve: %s ready (batches of up to %d within %.0f ms; warm-up call "
                 "%.2f s)", self.package.name, self.max_batch, self.max_wait_s * 1000,
                 self._batch_s)

    def _warm_up(self, engine: Engine) -> None:
        """One call at the serving shape, so the first request does not pay for compilation."""
        if self.static_size is not None:
            h, w = self.static_size
        else:
            from ocrnet.data.transforms import rescale_size

            w, h = rescale_size(2048, 1024, self.scale or defaults.SCALE)
        n = self.static_batch or 1
        from ocrnet.work.kernels import batch_labels

        batch_labels(engine, np.zeros((n, 3, h, w), np.float32), [(h, w)] * n, self.config.resize)

    def close(self) -> None:
        """Finish queued inference, then release the engine and the threads (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._loader.join()
        if self.batcher is not None:
            self.batcher.close()
        self._pool.shutdown(wait=True)
        if self.engine is not None:
            self.engine.close()

    # --- admission ----------------------------------------------------------------------------
    def admit(self) -> _Ticket:
        if not self.ready.is_set():
            detail = self.error or "the engine is still loading"
            raise HttpError(503, detail, {"Retry-After": "1"} if not self.error else None)
        with self._lock:
            if self._waiting >= self.config.max_queue:
                # Roughly when the queue ahead will have drained, at the measured batch time.
                wait = (self._waiting / self.max_batch + 1) * self._batch_s
                raise HttpError(503, f"{self._waiting} requests are already waiting "
                                f"(--max-queue {self.config.max_queue}); retry later",
                                {"Retry-After": str(max(1, math.ceil(wait)))})
            self._waiting += 1
            self.metrics.queue_depth.set(self._waiting)
        return _Ticket(self)

    # --- the work -----------------------------------------------------------------------------
    async def segment(self, data: bytes | np.ndarray, keep_original: bool, deadline: float,
                      ticket: _Ticket) -> tuple[np.ndarray, _Prepared, int]:
        """Decode and preprocess off the loop, wait for the batcher, return the prediction.

        `data`: an encoded image, or decoded BGR (H, W, 3) uint8 pixels (the v2 protocol's)."""
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self._pool, self._prepare, data, keep_original)
        if time.monotonic() >= deadline:
            raise _timeout(self.config)
        assert self.batcher is not None  # admit() only passes once it is running
        item = self.batcher.submit(prepared.image, prepared.size, on_start=ticket.release)
        future = asyncio.wrap_future(item.future)
        try:
            done, _ = await asyncio.wait({future}, timeout=max(0.0, deadline - time.monotonic()))
            # Past the deadline: withdraw it unless its inference already started.
            if not done and item.future.cancel():
                raise _timeout(self.config)
            return await future, prepared, item.batch_size
        except asyncio.CancelledError:  # the client left: drop the work if it has not started
            item.future.cancel()
            raise

    def _prepare(self, data: bytes | np.ndarray, keep_original: bool) -> _Prepared:
        import cv2

        from ocrnet.data.images import decode_image
        from ocrnet.data.transforms import preprocess

        img = data if isinstance(data, np.ndarray) else decode_image(
            data, source="the request body", max_pixels=self.config.max_pixels,
            flags=cv2.IMREAD_COLOR)
        size = (int(img.shape[0]), int(img.shape[1]))
        image = preprocess(img, self.scale)  # type: ignore[arg-type]
        if self.static_size is not None and tuple(image.shape[1:]) != self.static_size:
            (h, w), (sh, sw) = image.shape[1:], self.static_size
            raise HttpError(422, f"the image is {size[1]}x{size[0]} (WxH) and resizes to {w}x{h} "
                            f"at scale {_scale_text(self.scale)}, but the package runs only "
                            f"{sw}x{sh}; send images of that aspect ratio or serve a package "
                            "built with --dynamic")
        return _Prepared(image, size, img if keep_original else None)

    def _infer(self, batch: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        from ocrnet.work.kernels import batch_labels

        assert self.engine is not None
        return batch_labels(self.engine, batch, sizes, self.config.resize)

    def _on_batch(self, images: int, seconds: float) -> None:
        self._batch_s = 0.8 * self._batch_s + 0.2 * seconds
        self.metrics.batch(images, seconds)

    async def encode(self, pred: np.ndarray, rendering: str | None,
                     original: np.ndarray | None, opacity: float) -> bytes | dict[str, Any]:
        from ocrnet.work.formats import encode_prediction, prediction_summary

        def work() -> bytes | dict[str, Any]:
            if rendering is None:
                classes = self.manifest.get("classes")
                return prediction_summary(pred, classes) if classes else prediction_summary(pred)
            return encode_prediction(pred, rendering, image_bgr=original, opacity=opacity)

        return await asyncio.get_running_loop().run_in_executor(self._pool, work)


def static_shape(meta: dict[str, Any]) -> tuple[int | None, tuple[int, int] | None]:
    """The package's static batch size and (H, W), each None where the axis is dynamic."""
    shape = list(meta.get("input", {}).get("shape") or [None] * 4)
    batch = shape[0] if isinstance(shape[0], int) else None
    size = (shape[2], shape[3]) if all(isinstance(d, int) for d in shape[2:]) else None
    return batch, size


def resolve_max_batch(requested: int | None, static_batch: int | None, package: Path) -> int:
    """The batch size to serve: `requested`, else the static batch, else DYNAMIC_MAX_BATCH."""
    if requested is None:
        return static_batch or DYNAMIC_MAX_BATCH
    if static_batch is not None and requested > static_batch:
        raise ArgumentError(f"--max-batch {requested} is more than package {package} runs at "
                            f"once (its static batch is {static_batch}); rebuild it with --shape "
                            f"{requested}x3xHxW or with --dynamic")
    return requested


def _timeout(config: ServeConfig) -> HttpError:
    return HttpError(504, f"waited more than --timeout-s {config.timeout_s:g} s for the engine; "
                     "the server is overloaded, retry later")


def _scale_text(scale: object) -> str:
    return "x".join(map(str, scale)) if isinstance(scale, tuple) else str(scale)
