"""The serve app's endpoints: /v1/segment, /v1/model, /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ocrnet import defaults
from ocrnet.serve.body import image_bytes, read_body, unless_client_leaves
from ocrnet.serve.config import FORMATS
from ocrnet.serve.errors import HttpError
from ocrnet.serve.service import Service

log = logging.getLogger("ocrnet.serve")


def add_routes(app: FastAPI) -> None:
    """Register the endpoints on `app`."""
    app.add_api_route("/v1/segment", segment, methods=["POST"],
                      summary="Segment one encoded image (PNG, JPEG, BMP; raw body or multipart)")
    app.add_api_route("/v1/model", model_info, methods=["GET"], summary="The package manifest")
    app.add_api_route("/healthz", healthz, methods=["GET"], summary="The process is alive")
    app.add_api_route("/readyz", readyz, methods=["GET"], summary="Engine loaded, warmed up")
    app.add_api_route("/metrics", metrics, methods=["GET"], summary="Prometheus metrics")


def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def segment(request: Request, format: str = "labels",
                  opacity: float = defaults.OPACITY, mode: str = defaults.MODE) -> Response:
    """POST /v1/segment?format=labels|labelids|color|overlay|json|confidence[&opacity=0.5]
    [&mode=whole|slide|aug] (a test mode or confidence: `ocrnet.serve.modes`)."""
    from ocrnet.serve.modes import CONFIDENCE, segment_with_mode

    service = _service(request)
    start = time.monotonic()
    code = 500
    service.metrics.in_flight.inc()
    try:
        if format == CONFIDENCE or mode != defaults.MODE:
            response = await segment_with_mode(request, service, format, mode, opacity, start)
        else:
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
    from ocrnet.errors import BadFileError, ImageTooLargeError, OcrnetError
    from ocrnet.work.formats import check_choice, check_opacity

    try:  # the one option check predict runs too
        check_choice(fmt, list(FORMATS), "format")
        check_opacity(opacity)
    except OcrnetError as err:
        raise HttpError(422, str(err)) from None
    rendering = FORMATS[fmt]
    ticket = service.admit()
    try:
        body = await read_body(request, service.config.max_body_bytes)
        data = await image_bytes(request, body)
        deadline = start + service.config.timeout_s
        try:
            pred, prepared, batch = await unless_client_leaves(
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
            "formats": [*FORMATS, "confidence"], "modes": list(defaults.MODES),
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
