"""`create_app(package)`: the FastAPI app of `ocrnet serve`, for uvicorn and Ray Serve alike.

Per request: the handler admits it (or answers 503 when `max_queue` requests already wait),
reads the body within `max_body_mb`, and hands decode + preprocess to worker threads: the
header's size is checked against `max_pixels` before anything is decoded, then the image takes
`ocrnet predict`'s path (`ocrnet.data.transforms.preprocess` at predict's default scale). The
`Batcher`'s one inference thread runs `Engine.labels_at` on coalesced batches; a worker thread
encodes the answer with predict's own `encode_prediction` / `prediction_summary`, so a response
is byte for byte the file `ocrnet predict` writes. The event loop only awaits futures.

Everything stateful (engine, threads, metrics registry) is made in the lifespan, never in
`create_app`, so the app object stays a picklable description that Ray Serve ships to replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ocrnet import defaults
from ocrnet.errors import ArgumentError
from ocrnet.serve.config import DYNAMIC_MAX_BATCH, FORMATS, ServeConfig

if TYPE_CHECKING:
    from ocrnet.engines.base import Engine
    from ocrnet.serve.batching import Batcher
    from ocrnet.serve.metrics import Metrics

log = logging.getLogger("ocrnet.serve")

#: HTTP status -> the `error` field of its JSON body.
ERRORS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
          413: "payload_too_large", 415: "unsupported_media_type", 422: "unprocessable",
          499: "client_closed_request", 500: "internal_error", 503: "unavailable",
          504: "timeout"}


class HttpError(Exception):
    """An answer other than 200: `{"error": ERRORS[status], "detail": detail}`."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


# --- the app ---------------------------------------------------------------------------------
def create_app(package: str | os.PathLike[str], config: ServeConfig | None = None,
               **options: Any) -> FastAPI:
    """The FastAPI app serving `package` (an engine package directory).

    `config` (or keyword `options` named as `ServeConfig`'s fields, e.g. `max_batch=4`)
    sets the limits. The engine opens in the app's lifespan, in the background: `/healthz`
    answers at once, `/readyz` once the engine is loaded and warmed up. Embed it in your own
    ASGI app with `app.mount("/ocrnet", create_app(...))` (mounted apps need their lifespan
    run, e.g. by entering `app.router.lifespan_context(app)` in yours).
    """
    cfg = (config or ServeConfig()).replace(**options) if options else (config or ServeConfig())
    path = Path(package).resolve()  # replicas may start in another working directory
    from ocrnet.package import read_package

    # A wrong path or --max-batch fails here, in the caller, not later in a server or replica.
    static_batch, _ = _static_shape(read_package(path, verify=False).meta)
    _max_batch(cfg.max_batch, static_batch, path)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service(path, cfg)
        app.state.service = service
        service.start()
        try:
            yield
        finally:
            # uvicorn has drained the in-flight requests by now; finish what is queued.
            await asyncio.to_thread(service.close)

    from ocrnet import __version__

    app = FastAPI(title="ocrnet", version=__version__, lifespan=lifespan,
                  description="OCRNet semantic segmentation (Cityscapes classes)")
    app.add_exception_handler(HttpError, _error_response)
    app.add_exception_handler(HTTPException, _starlette_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_api_route("/v1/segment", segment, methods=["POST"],
                      summary="Segment one encoded image (PNG, JPEG, BMP; raw body or multipart)")
    app.add_api_route("/v1/model", model_info, methods=["GET"], summary="The package manifest")
    app.add_api_route("/healthz", healthz, methods=["GET"], summary="The process is alive")
    app.add_api_route("/readyz", readyz, methods=["GET"], summary="Engine loaded, warmed up")
    app.add_api_route("/metrics", metrics, methods=["GET"], summary="Prometheus metrics")
    return app


# --- the service behind the routes -----------------------------------------------------------
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
        self.static_batch, self.static_size = _static_shape(self.manifest)
        self.max_batch = _max_batch(config.max_batch, self.static_batch, package)
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
        engine.labels_at(np.zeros((n, 3, h, w), np.float32), [(h, w)] * n, self.config.resize)

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
    async def segment(self, data: bytes, keep_original: bool, deadline: float,
                      ticket: _Ticket) -> tuple[np.ndarray, _Prepared, int]:
        """Decode and preprocess off the loop, wait for the batcher, return the prediction."""
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

    def _prepare(self, data: bytes, keep_original: bool) -> _Prepared:
        import cv2

        from ocrnet.data.images import decode_image
        from ocrnet.data.transforms import preprocess

        img = decode_image(data, source="the request body", max_pixels=self.config.max_pixels,
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
        assert self.engine is not None
        return self.engine.labels_at(batch, sizes, self.config.resize)

    def _on_batch(self, images: int, seconds: float) -> None:
        self._batch_s = 0.8 * self._batch_s + 0.2 * seconds
        self.metrics.batch(images, seconds)

    async def encode(self, pred: np.ndarray, rendering: str | None,
                     original: np.ndarray | None, opacity: float) -> bytes | dict[str, Any]:
        from ocrnet.predict import encode_prediction, prediction_summary

        def work() -> bytes | dict[str, Any]:
            if rendering is None:
                classes = self.manifest.get("classes")
                return prediction_summary(pred, classes) if classes else prediction_summary(pred)
            return encode_prediction(pred, rendering, image_bgr=original, opacity=opacity)

        return await asyncio.get_running_loop().run_in_executor(self._pool, work)


def _static_shape(meta: dict[str, Any]) -> tuple[int | None, tuple[int, int] | None]:
    """The package's static batch size and (H, W), each None where the axis is dynamic."""
    shape = list(meta.get("input", {}).get("shape") or [None] * 4)
    batch = shape[0] if isinstance(shape[0], int) else None
    size = (shape[2], shape[3]) if all(isinstance(d, int) for d in shape[2:]) else None
    return batch, size


def _max_batch(requested: int | None, static_batch: int | None, package: Path) -> int:
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


# --- routes ----------------------------------------------------------------------------------
def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def segment(request: Request, format: str = "labels",
                  opacity: float = defaults.OPACITY) -> Response:
    """POST /v1/segment?format=labels|labelids|color|overlay|json[&opacity=0.5]."""
    service = _service(request)
    start = time.monotonic()
    code = 500
    service.metrics.in_flight.inc()
    try:
        response = await _segment(request, service, format, opacity, start)
        code = response.status_code
        return response
    except HttpError as err:
        code = err.status
        raise
    except asyncio.CancelledError:
        code = 499
        raise
    except Exception as err:
        log.exception("ocrnet serve: POST /v1/segment failed")
        raise HttpError(500, f"{type(err).__name__}: {err}") from None
    finally:
        service.metrics.in_flight.dec()
        service.metrics.answered(code, time.monotonic() - start)


async def _segment(request: Request, service: Service, fmt: str, opacity: float,
                   start: float) -> Response:
    from ocrnet.errors import BadFileError, ImageTooLargeError

    if fmt not in FORMATS:
        hint = difflib.get_close_matches(fmt.lower(), FORMATS, n=1)
        maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise HttpError(422, f"unknown format {fmt!r}{maybe}; valid: {', '.join(FORMATS)}")
    if not 0.0 <= opacity <= 1.0:
        raise HttpError(422, f"opacity must be within 0..1, got {opacity}")
    rendering = FORMATS[fmt]
    ticket = service.admit()
    try:
        body = await _read_body(request, service.config.max_body_bytes)
        data = await _image_bytes(request, body)
        deadline = start + service.config.timeout_s
        try:
            pred, prepared, batch = await _unless_client_leaves(
                request, service.segment(data, rendering == "overlay", deadline, ticket))
        except ImageTooLargeError as err:
            raise HttpError(413, err.reason) from None
        except BadFileError as err:
            raise HttpError(415, err.reason) from None
    finally:
        ticket.release()
    content = await service.encode(pred, rendering, prepared.original, opacity)
    headers = {"X-Ocrnet-Batch-Size": str(batch)}
    if isinstance(content, dict):
        return JSONResponse(content, headers=headers)
    return Response(content, media_type="image/png", headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    too_big = HttpError(413, f"the request body is over the limit of {limit:,} bytes "
                        "(--max-body-mb)")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    from starlette.requests import ClientDisconnect

    chunks, total = [], 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise too_big
            chunks.append(chunk)
    except ClientDisconnect:
        raise HttpError(499, "the client closed the connection while sending") from None
    if not total:
        raise HttpError(400, "the request body is empty; send one encoded image (PNG, JPEG or "
                        "BMP) as the body or as a multipart file field")
    return b"".join(chunks)


async def _image_bytes(request: Request, body: bytes) -> bytes:
    """The image: the raw body, or the first file of a multipart/form-data body."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body
    from starlette.datastructures import UploadFile
    from starlette.requests import Request as StarletteRequest

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await StarletteRequest(request.scope, replay).form(max_files=1, max_fields=16)
    except Exception as err:  # starlette raises its own HTTP/parse errors
        raise HttpError(400, f"cannot parse the multipart body: {getattr(err, 'detail', err)}"
                        ) from None
    files = [v for v in form.values() if isinstance(v, UploadFile)]
    if not files:
        raise HttpError(400, "the multipart body has no file field; send the image as one")
    data = await files[0].read()
    await form.close()
    if not data:
        raise HttpError(400, "the uploaded file is empty")
    return data


async def _unless_client_leaves(request: Request, work: Awaitable[Any]) -> Any:
    """Await `work`, cancelling it (and answering 499) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server itself cancelled us (Ray Serve on disconnect)
        task.cancel()
        raise
    finally:
        watch.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise HttpError(499, "the client closed the connection; its work was dropped")


async def _disconnected(request: Request) -> None:
    """Return when the client goes away (the ASGI server's `http.disconnect`)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def model_info(request: Request) -> dict[str, Any]:
    """GET /v1/model: what is served (the manifest's facts) and how."""
    service = _service(request)
    meta = service.manifest
    manifest = service.package / "ocrnet.json"
    return {
        "name": service.package.name,
        "backend": meta.get("backend"),
        "precision": meta.get("precision"),
        "runtime": meta.get("runtime", {}),
        "model": meta.get("model", {}),
        "input": meta.get("input", {}),
        "classes": meta.get("classes", []),
        "palette": meta.get("palette", []),
        "source": meta.get("source", {}),
        "files": meta.get("files", {}),
        "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "serving": {
            "ready": service.ready.is_set(),
            "formats": list(FORMATS),
            "max_batch": service.max_batch,
            "pad_to": service.static_batch,
            "max_wait_ms": (service.max_wait_s * 1000 if service.max_wait_s is not None
                            else service.config.max_wait_ms),
            "max_queue": service.config.max_queue,
            "timeout_s": service.config.timeout_s,
            "max_body_mb": service.config.max_body_mb,
            "max_pixels": service.config.max_pixels,
            "scale": list(service.scale) if isinstance(service.scale, tuple) else service.scale,
            "resize": service.config.resize,
        },
    }


async def healthz(request: Request) -> dict[str, str]:
    """GET /healthz: 200 while the process serves; 500 if the engine failed to load."""
    service = _service(request)
    if service.error:
        raise HttpError(500, service.error)
    return {"status": "alive"}


async def readyz(request: Request) -> dict[str, str]:
    """GET /readyz: 200 once the engine is loaded and warmed up, else 503."""
    service = _service(request)
    if not service.ready.is_set():
        raise HttpError(503, service.error or "the engine is still loading")
    return {"status": "ready"}


async def metrics(request: Request) -> Response:
    """GET /metrics: Prometheus text exposition."""
    service = _service(request)
    return Response(service.metrics.render(), media_type=service.metrics.content_type)


# --- errors as JSON --------------------------------------------------------------------------
def _json_error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": ERRORS.get(status, "error"), "detail": detail},
                        status_code=status, headers=headers)


async def _error_response(request: Request, err: Exception) -> Response:
    assert isinstance(err, HttpError)  # registered for HttpError only
    return _json_error(err.status, err.detail, err.headers)


async def _starlette_error(request: Request, err: Exception) -> Response:
    status = getattr(err, "status_code", 500)
    return _json_error(status, str(getattr(err, "detail", err)), getattr(err, "headers", None))


async def _validation_error(request: Request, err: Exception) -> Response:
    problems = []
    for e in getattr(err, "errors", list)():
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "query")
        problems.append(f"{where}: {e.get('msg', 'invalid')}")
    return _json_error(422, "; ".join(problems) or str(err))
