"""The serve app's endpoints: /v1/segment, /v1/model, /healthz, /readyz, /metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ocrnet import defaults
from ocrnet.serve.body import image_work, read_image
from ocrnet.serve.budget import TRIM_AFTER_BYTES, Reservation
from ocrnet.serve.config import FORMATS
from ocrnet.serve.errors import HttpError
from ocrnet.serve.service import Service

#: The body /v1/segment reads itself (the handler streams it): declared for clients and fuzzers.
_IMAGE_BODY = {
    **{kind: {"schema": {"type": "string", "format": "binary"}}
       for kind in ("image/png", "image/jpeg", "image/bmp", "application/octet-stream")},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}},
}


def add_routes(app: FastAPI) -> None:
    """Register the endpoints on `app`."""
    app.add_api_route("/v1/segment", segment, methods=["POST"],
                      summary="Segment one encoded image (PNG, JPEG, BMP; raw body or multipart)",
                      openapi_extra={"requestBody": {"required": True, "content": _IMAGE_BODY}})
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
    service.check_ready()
    held = service.budget.reservation()
    try:
        if format == CONFIDENCE or mode != defaults.MODE:
            return await segment_with_mode(request, service, format, mode, opacity, held)
        return await _segment(request, service, _rendering(format, opacity), opacity, held)
    finally:
        big = held.held >= TRIM_AFTER_BYTES
        held.release()
        if big:
            service.trim_memory()


def _rendering(fmt: str, opacity: float) -> str | None:
    """The one option check predict runs too; 422 with its message."""
    from ocrnet.errors import OcrnetError
    from ocrnet.work.formats import check_choice, check_opacity

    try:
        check_choice(fmt, list(FORMATS), "format")
        check_opacity(opacity)
    except OcrnetError as err:
        raise HttpError(422, str(err)) from None
    return FORMATS[fmt]


async def _segment(request: Request, service: Service, rendering: str | None, opacity: float,
                   held: Reservation) -> Response:
    """Body (no queue slot held while it arrives), admission, inference, encoding."""
    data = await read_image(request, service.config, held, service.budget)
    ticket = service.admit(data, held)
    try:
        deadline = time.monotonic() + service.config.timeout_s
        pred, prepared, batch = await image_work(
            request, service.segment(data, rendering == "overlay", deadline, ticket))
    finally:
        ticket.release()
    del data
    content = await service.encode(pred, rendering, prepared.original, opacity)
    headers = {"X-Ocrnet-Batch-Size": str(batch)}
    if isinstance(content, dict):
        return JSONResponse(content, headers=headers)
    return Response(content, media_type="image/png", headers=headers)


async def model_info(request: Request) -> dict[str, Any]:
    """GET /v1/model: what is served (the manifest's facts) and how."""
    service = _service(request)
    meta = service.manifest
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
        "manifest_sha256": service.manifest_sha256,  # hashed once, at start
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
            "max_inflight_mb": service.budget.limit / (1 << 20),
            "max_connections": service.config.max_connections,
            "read_timeout_s": service.config.read_timeout_s,
            "scale": list(service.scale) if isinstance(service.scale, tuple) else service.scale,
            "resize": service.config.resize,
            # the Ray Serve replica that answered (its metrics carry this `replica` label)
            "replica": service.metrics.replica,
        },
    }


async def healthz(request: Request) -> dict[str, str]:
    """GET /healthz: 200 while the process serves; 500 if the engine failed to load."""
    service = _service(request)
    if service.error:  # the reason is in the server log, not in an answer
        raise HttpError(500, "the engine failed to load; the server log says why")
    return {"status": "alive"}


async def readyz(request: Request) -> dict[str, str]:
    """GET /readyz: 200 once the engine is loaded and warmed up, else 503."""
    service = _service(request)
    service.check_ready()
    return {"status": "ready"}


async def metrics(request: Request) -> Response:
    """GET /metrics: Prometheus text exposition."""
    service = _service(request)
    return Response(service.metrics.render(), media_type=service.metrics.content_type)
