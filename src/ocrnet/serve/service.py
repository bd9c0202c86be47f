"""`Service`: one opened package behind the serve app's routes.

It owns everything stateful: the engine (opened and warmed up on a loader thread), the
`Batcher` and its inference thread, the worker threads that decode, preprocess and encode, the
one thread that runs test modes and confidence maps (`mode_pool`), the admission count behind
`max_queue`, and the metrics. The app's lifespan makes one per app.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from ocrnet.serve.body import over_budget
from ocrnet.serve.budget import image_cost, mode_cost
from ocrnet.serve.config import DYNAMIC_MAX_BATCH, LARGE_PIXELS, ServeConfig
from ocrnet.serve.errors import HttpError

if TYPE_CHECKING:
    from ocrnet.engines.base import Engine
    from ocrnet.serve.batching import Batcher
    from ocrnet.serve.budget import Reservation
    from ocrnet.serve.metrics import Metrics
    from ocrnet.work.modes import Mode

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
                self._service.metrics.queued(self._service._waiting)


class Service:
    """One opened package: engine, batcher, worker threads and metrics of one app."""

    def __init__(self, package: Path, config: ServeConfig) -> None:
        from ocrnet.fileio import sha256_file
        from ocrnet.package import read_package
        from ocrnet.serve.budget import Budget
        from ocrnet.serve.metrics import Metrics

        self.package = package
        self.config = config
        self.manifest = read_package(package, verify=False).meta
        self.classes = len(self.manifest.get("classes") or []) or 19  # the logits' channels
        # Hashed once: /v1/model answers from memory, and a replica compares it with the
        # deploying process's (config.package_sha256) before it opens the engine.
        self.manifest_sha256 = sha256_file(package / "ocrnet.json")
        self.budget = Budget(config.inflight_bytes)
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
        # One engine call at a time: the batcher's, or a test mode's (ocrnet.serve.modes).
        self.engine_lock = threading.Lock()
        self._waiting = 0
        self._batch_s = 1.0  # running estimate of one inference call, for Retry-After
        self._pool = ThreadPoolExecutor(config.workers or min(4, os.cpu_count() or 1),
                                        thread_name_prefix="ocrnet-serve")
        # Images over LARGE_PIXELS take their own lane (one thread), so a few huge images
        # queue behind each other instead of occupying every worker ahead of small ones.
        self._large = ThreadPoolExecutor(1, thread_name_prefix="ocrnet-serve-large")
        # Test modes and confidence maps (serve/modes.py) hold the engine lock for a whole
        # image, so they run one at a time anyway: one thread of their own, whose queue the
        # admission count bounds, instead of asyncio's default executor (unbounded by ours).
        self.mode_pool = ThreadPoolExecutor(1, thread_name_prefix="ocrnet-serve-modes")
        self._loader = threading.Thread(target=self._load, name="ocrnet-load", daemon=True)
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._loader.start()

    def _load(self) -> None:
        try:
            from ocrnet.engines import open_model
            from ocrnet.serve.batching import Batcher

            self._check_package()
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

    def _check_package(self) -> None:
        """Refuse a package other than the one the deploying process read (Ray Serve replicas
        open whatever is at the path on their node): the manifest's sha256, then every file's."""
        want = self.config.package_sha256
        if want is None:
            return
        from ocrnet.package import read_package

        if self.manifest_sha256 != want:
            raise ArgumentError(f"its manifest's sha256 is {self.manifest_sha256[:12]}..., not "
                                f"{want[:12]}... as read where it was deployed; this node has "
                                "another package at that path")
        read_package(self.package, verify=True)  # every listed file against the manifest

    def _warm_up(self, engine: Engine) -> None:
        """One call at the serving shape, so the first request does not pay for compilation."""
        if self.static_size is not None:
            h, w = self.static_size
        else:
            from ocrnet.data.transforms import rescale_size

            w, h = rescale_size(2048, 1024, self.scale or defaults.SCALE)
        n = self.static_batch or 1
        # The first image at another size resizes logits (torch, ~150 MB of libraries loaded
        # once): done here, so the memory at start is the steady state, not a leak later.
        sizes = [(h + 1, w + 1)] + [(h, w)] * (n - 1)
        for labels in self._infer(np.zeros((n, 3, h, w), np.float32), sizes):
            if labels.ndim == 3:
                from ocrnet.data.transforms import logits_to_labels

                logits_to_labels(labels, (h + 1, w + 1))

    def close(self) -> None:
        """Finish queued inference, then release the engine and the threads (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._loader.join()
        if self.batcher is not None:
            self.batcher.close()
        for pool in (self._pool, self._large, self.mode_pool):
            pool.shutdown(wait=True)
        if self.engine is not None:
            self.engine.close()

    def trim_memory(self) -> None:
        """Hand freed memory back to the OS, on a worker thread (after a large request)."""
        from ocrnet.serve.budget import trim

        with contextlib.suppress(RuntimeError):  # the pool is shut down: we are closing
            self._pool.submit(trim)

    # --- admission ----------------------------------------------------------------------------
    def check_ready(self) -> None:
        """503 (with Retry-After while loading) unless the engine is loaded and warmed up."""
        if self.error:
            raise HttpError(503, "the engine failed to load; the server log says why")
        if not self.ready.is_set():
            raise HttpError(503, "the engine is still loading", {"Retry-After": "1"})

    def admit(self, data: bytes | np.ndarray | list[bytes | np.ndarray], held: Reservation,
              mode: Mode | None = None, confidence: bool = False) -> _Ticket:
        """One queue slot for a complete body, once its images' memory is reserved in `held`.

        `data`: one encoded image or decoded BGR pixels, or a list of them (a v2 request). An
        encoded image's cost is read from its header (nothing decoded yet); a header that is
        not recognised or over --max-pixels is refused by the decode, which allocates nothing.
        `mode` (checked for the engine) and `confidence`: the request runs outside the batcher
        (`ocrnet.serve.modes`) and reserves that mode's working set (`budget.mode_cost`).
        """
        self.check_ready()
        for image in data if isinstance(data, list) else [data]:
            self._reserve(image_size(image), held, mode, confidence)
        with self._lock:
            if self._waiting >= self.config.max_queue:
                raise HttpError(503, f"{self._waiting} requests are already waiting "
                                f"(--max-queue {self.config.max_queue}); retry later",
                                {"Retry-After": str(max(1, math.ceil(self._retry_after_s())))})
            self._waiting += 1
            self.metrics.queued(self._waiting)
        return _Ticket(self)

    def _reserve(self, size: tuple[int, int] | None, held: Reservation, mode: Mode | None,
                 confidence: bool) -> None:
        if size is None or not 0 < size[0] * size[1] <= self.config.max_pixels:
            return
        if mode is None:
            cost, how = image_cost(size[0], size[1], self._input_pixels(size)), ""
        else:
            cost = mode_cost(size[0], size[1], mode, resized=self._mode_input(size, mode),
                             classes=self.classes, per_call=self.static_batch or 1,
                             confidence=confidence)
            how = f" in mode {mode.name}" + (" with confidence" if confidence else "")
        if cost > self.budget.limit:
            raise HttpError(413, f"a {size[1]}x{size[0]} (WxH) image needs about "
                            f"{cost / (1 << 20):,.0f} MB to serve{how}, more than the whole "
                            f"--max-inflight-mb {self.budget.limit / (1 << 20):,.0f}")
        if not held.grow(cost):
            raise over_budget(self.budget, self._retry_after_s())

    def _retry_after_s(self) -> float:
        """Roughly when the queue ahead will have drained, at the measured batch time."""
        return (self._waiting / self.max_batch + 1) * self._batch_s

    def _input_pixels(self, size: tuple[int, int]) -> int:
        if self.static_size is not None:
            return self.static_size[0] * self.static_size[1]
        from ocrnet.data.transforms import rescale_size

        w, h = rescale_size(size[1], size[0], self.scale or defaults.SCALE)
        return w * h

    def mode_scale(self, mode: Mode) -> tuple[int, int] | float | None:
        """The keep-ratio resize `mode` runs at here (`Mode.scale`: slide's own default)."""
        assert self.engine is not None  # check_ready() passed
        scale: tuple[int, int] | float | None = mode.scale(self.engine, self.config.scale)
        return scale

    def _mode_input(self, size: tuple[int, int], mode: Mode) -> tuple[int, int] | None:
        """(h, w) of the resized image `mode` runs on; None for aug (views per ratio)."""
        scale = None if mode.name == "aug" else self.mode_scale(mode)
        if scale is None:
            return None
        from ocrnet.data.transforms import rescale_size

        w, h = rescale_size(size[1], size[0], scale)
        return h, w

    # --- the work -----------------------------------------------------------------------------
    async def segment(self, data: bytes | np.ndarray, keep_original: bool, deadline: float,
                      ticket: _Ticket) -> tuple[np.ndarray, _Prepared, int]:
        """Decode and preprocess off the loop, wait for the batcher, return the prediction.

        `data`: an encoded image, or decoded BGR (H, W, 3) uint8 pixels (the v2 protocol's)."""
        loop = asyncio.get_running_loop()
        size = image_size(data)
        lane = self.lane(size[0] * size[1] if size else 0)
        prepared = await loop.run_in_executor(lane, self._prepare, data, keep_original)
        if time.monotonic() >= deadline:
            raise _timeout(self.config)
        assert self.batcher is not None  # admit() only passes once it is running
        item = self.batcher.submit(prepared.image, prepared.size, on_start=ticket.release)
        future = asyncio.wrap_future(item.future)
        try:
            done, _ = await asyncio.wait({future}, timeout=max(0.0, deadline - time.monotonic()))
            # Past the deadline: withdraw it unless its inference already started.
            if not done and item.future.cancel():
                self.metrics.withdraw()
                raise _timeout(self.config)
            out = await future
        except asyncio.CancelledError:  # the client left: drop the work if it has not started
            if item.future.cancel():
                self.metrics.withdraw()
            raise
        if out.ndim == 3:  # logits at the network's size: to labels at the image's, off-thread
            from ocrnet.data.transforms import logits_to_labels

            out = await loop.run_in_executor(lane, logits_to_labels, out, prepared.size)
        return out, prepared, item.batch_size

    def lane(self, pixels: int) -> ThreadPoolExecutor:
        """The worker threads for an image of `pixels`: a lane of its own over LARGE_PIXELS."""
        return self._large if pixels > LARGE_PIXELS else self._pool

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
        """The work layer's `batch_labels`, except that a batch needing the exact (logits)
        resize returns each image's logits: `segment` resizes them to labels on a worker thread,
        so a 60 MP image's resize never holds up the inference thread (the same
        `logits_to_labels` call `batch_labels` makes, so the same bytes)."""
        assert self.engine is not None
        from ocrnet.work.batching import batch_labels

        with self.engine_lock:  # a test-mode request (serve/modes.py) never overlaps a batch
            if self.config.resize == "logits" and any(tuple(s) != batch.shape[-2:]
                                                      for s in sizes):
                result = self.engine.infer(batch, return_logits=True)
                if result.logits is not None:
                    return list(result.logits)
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

        return await asyncio.get_running_loop().run_in_executor(self.lane(pred.size), work)


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


def image_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(height, width) of decoded pixels, or from an encoded image's header (None if unknown)."""
    if isinstance(data, np.ndarray):
        return int(data.shape[0]), int(data.shape[1])
    from ocrnet.data.images import header_size

    return header_size(data)
