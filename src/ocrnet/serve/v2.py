"""The Open Inference Protocol v2 (KServe v2 REST, as Triton and OpenVINO Model Server speak it)
beside /v1, on the same `Service`: the same batcher, limits and status codes.

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     {"live": true}, {"ready": true}
    GET  /v2/models/{name}[/versions/1]        model metadata
    GET  /v2/models/{name}[/versions/1]/ready  {"name": ..., "ready": true}
    POST /v2/models/{name}[/versions/1]/infer  inference

The model is named after the package folder (`--model-name` to change it), version "1". Input
`image`: `BYTES [N]`, each element one encoded image (PNG, JPEG, BMP...), or `UINT8 [N, H, W, 3]`
BGR pixels. Outputs: `labels` (`UINT8 [N, H, W]`, trainIds at the image's size, the pixels of
the PNG `ocrnet predict` writes), `labelids` (official Cityscapes ids, on request),
`class_fractions` (`FP32 [N, classes]`) and `confidence` (on request: `UINT8 [N, H, W]`, the
maximum softmax probability as round(p * 255), the pixels of `ocrnet predict --confidence`'s
PNG; such a request runs each image through predict's step, `ocrnet.serve.modes`, and its
labels come from the same logits); without an `outputs` list, `labels` and `class_fractions`.
JSON `data` and the binary tensor extension both ways (`v2_tensors`).
Errors answer `{"error": "..."}` with /v1's status codes.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ocrnet.serve.body import image_work, read_body
from ocrnet.serve.budget import TRIM_AFTER_BYTES, Reservation
from ocrnet.serve.errors import HttpError
from ocrnet.serve.service import Service, image_size
from ocrnet.serve.v2_tensors import InferRequest, Tensor, encode_response, parse_request

VERSION = "1"
INPUT = "image"
#: Output name -> its datatype; the outputs sent when the request names none.
OUTPUTS = {"labels": "UINT8", "labelids": "UINT8", "class_fractions": "FP32",
           "confidence": "UINT8"}
DEFAULT_OUTPUTS = ("labels", "class_fractions")
#: The output that runs each image through predict's step (`ocrnet.serve.modes`).
CONFIDENCE = "confidence"
HEADER = "Inference-Header-Content-Length"


def add_v2_routes(app: FastAPI) -> None:
    """Register the v2 endpoints on `app`."""
    router = APIRouter(prefix="/v2", tags=["v2"])
    router.add_api_route("", _v2(server_metadata), methods=["GET"], summary="Server metadata")
    router.add_api_route("/health/live", _v2(live), methods=["GET"], summary="Liveness")
    router.add_api_route("/health/ready", _v2(ready), methods=["GET"], summary="Readiness")
    for base in ("/models/{model_name}", "/models/{model_name}/versions/{model_version}"):
        router.add_api_route(base, _v2(model_metadata), methods=["GET"],
                             summary="Model metadata")
        router.add_api_route(base + "/ready", _v2(model_ready), methods=["GET"],
                             summary="Model readiness")
        router.add_api_route(base + "/infer", _v2(infer), methods=["POST"],
                             summary="Inference (JSON or binary tensor data)")
    app.include_router(router)


def _v2(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """`handler` answering its `HttpError`s as the protocol's `{"error": "..."}`."""

    @functools.wraps(handler)
    async def wrapped(*args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(*args, **kwargs)
        except HttpError as err:
            return JSONResponse({"error": err.detail}, status_code=err.status,
                                headers=err.headers)

    return wrapped


def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def model_name(service: Service) -> str:
    return service.config.model_name or service.package.name


def _check_model(service: Service, name: str, version: str | None) -> None:
    served = model_name(service)
    if name != served or version not in (None, VERSION):
        asked = name if version is None else f"{name} version {version}"
        raise HttpError(404, f"unknown model {asked!r}; this server serves {served!r} "
                        f"version {VERSION}")


async def server_metadata(request: Request) -> Response:
    from ocrnet import __version__

    return JSONResponse({"name": "ocrnet", "version": __version__,
                         "extensions": ["binary_tensor_data"]})


async def live(request: Request) -> Response:
    service = _service(request)
    if service.error:
        # the reason is in the server log, not in an answer
        return JSONResponse({"error": "the engine failed to load; the server log says why"},
                            status_code=500)
    return JSONResponse({"live": True})


async def ready(request: Request) -> Response:
    service = _service(request)
    if not service.ready.is_set():
        why = "the engine failed to load" if service.error else "the engine is still loading"
        # the protocol's error shape, as every v2 error: the status code is the answer
        return JSONResponse({"error": why}, status_code=503)
    return JSONResponse({"ready": True})


async def model_metadata(request: Request, model_name: str,
                         model_version: str | None = None) -> Response:
    service = _service(request)
    _check_model(service, model_name, model_version)
    meta = service.manifest
    classes = len(meta.get("classes") or []) or 19
    return JSONResponse({
        "name": model_name, "versions": [VERSION],
        "platform": f"ocrnet_{meta.get('backend', 'unknown')}",
        # BYTES [N] of encoded images; UINT8 [N, H, W, 3] BGR pixels are taken as well.
        "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "labels", "datatype": "UINT8", "shape": [-1, -1, -1]},
                    {"name": "labelids", "datatype": "UINT8", "shape": [-1, -1, -1]},
                    {"name": "class_fractions", "datatype": "FP32", "shape": [-1, classes]},
                    {"name": "confidence", "datatype": "UINT8", "shape": [-1, -1, -1]}],
        "parameters": {"max_batch_size": service.max_batch,
                       "pixel_input": {"name": INPUT, "datatype": "UINT8",
                                       "shape": [-1, -1, -1, 3], "layout": "NHWC BGR"}},
    })


async def model_ready(request: Request, model_name: str,
                      model_version: str | None = None) -> Response:
    service = _service(request)
    _check_model(service, model_name, model_version)
    service.check_ready()
    return JSONResponse({"name": model_name, "ready": True})


async def infer(request: Request, model_name: str, model_version: str | None = None) -> Response:
    """POST .../infer: counted in /metrics with /v1's requests (the app's middleware)."""
    service = _service(request)
    _check_model(service, model_name, model_version)
    service.check_ready()
    held = service.budget.reservation()
    try:
        return await _infer(request, service, model_name, held)
    finally:
        big = held.held >= TRIM_AFTER_BYTES
        held.release()
        if big:
            service.trim_memory()


async def _infer(request: Request, service: Service, name: str, held: Reservation) -> Response:
    """Body (no queue slot held while it arrives), admission of every image, inference."""
    body = await read_body(request, service.config, held)
    parsed = await asyncio.to_thread(parse_request, body, request.headers.get(HEADER))
    del body
    wanted = _outputs(parsed)
    images = _images(parsed, service)
    _check_sizes([image_size(i) for i in images], wanted)  # before any work, where headers tell
    if CONFIDENCE in wanted:
        preds, maps, batch = await _with_confidence(request, service, images, held)
    else:
        preds, batch = await _batched(request, service, images, held)
        maps = []
    header: dict[str, Any] = {"model_name": name, "model_version": VERSION}
    if parsed.id is not None:
        header["id"] = parsed.id
    content, head_length = await asyncio.to_thread(_answer, service, preds, wanted, header,
                                                   maps)
    headers = {"X-Ocrnet-Batch-Size": str(batch)}
    if head_length is None:
        return Response(content, media_type="application/json", headers=headers)
    headers[HEADER] = str(head_length)
    return Response(content, media_type="application/octet-stream", headers=headers)


async def _batched(request: Request, service: Service, images: list[bytes | np.ndarray],
                   held: Reservation) -> tuple[list[np.ndarray], int]:
    """Every image's labels through the batcher, and the largest batch they ran in."""
    ticket = service.admit(list(images), held)
    try:
        deadline = time.monotonic() + service.config.timeout_s
        work = asyncio.gather(*(service.segment(image, False, deadline, ticket)
                                for image in images))
        results = await image_work(request, work)
    finally:
        ticket.release()
    return [pred for pred, _, _ in results], max(size for _, _, size in results)


async def _with_confidence(request: Request, service: Service, images: list[bytes | np.ndarray],
                           held: Reservation) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Labels and max-softmax maps, each image through predict's step in whole mode (what /v1
    `format=confidence` runs, admitted at that mode's cost); each runs as its own batch."""
    from ocrnet.serve.modes import predict_with_mode, unless_unfit
    from ocrnet.work.modes import WHOLE

    ticket = service.admit(list(images), held, WHOLE, confidence=True)
    try:
        results = await unless_unfit(request, asyncio.gather(*(
            predict_with_mode(service, image, WHOLE, confidence=True) for image in images)))
    finally:
        ticket.release()
    return [p.labels for p, _ in results], [p.confidence for p, _ in results], 1


def _outputs(parsed: InferRequest) -> dict[str, bool]:
    """Output name -> sent as binary data, in the order they will appear."""
    requested = parsed.outputs or dict.fromkeys(DEFAULT_OUTPUTS)
    unknown = [n for n in requested if n not in OUTPUTS]
    if unknown:
        raise HttpError(400, f"unknown output {unknown[0]!r}; this model has "
                        f"{', '.join(OUTPUTS)}")
    return {n: parsed.binary_default if b is None else b for n, b in requested.items()}


def _images(parsed: InferRequest, service: Service) -> list[bytes | np.ndarray]:
    """The request's images: encoded bytes, or BGR (H, W, 3) uint8 pixels."""
    if [t.name for t in parsed.inputs] != [INPUT]:
        raise HttpError(400, f"expected one input named {INPUT!r}, got "
                        f"{[t.name for t in parsed.inputs]}")
    tensor: Tensor = parsed.inputs[0]
    if tensor.datatype == "BYTES" and len(tensor.shape) == 1:
        images: list[bytes | np.ndarray] = list(tensor.data)
    elif tensor.datatype == "UINT8" and len(tensor.shape) == 4 and tensor.shape[3] == 3:
        _, h, w, _ = tensor.shape
        if h * w > service.config.max_pixels:
            raise HttpError(413, f"the images are {w}x{h} (WxH), over the limit of "
                            f"{service.config.max_pixels:,} pixels (--max-pixels)")
        if h < 1 or w < 1:
            raise HttpError(400, f"input {INPUT!r}: empty images ({w}x{h})")
        images = list(np.asarray(tensor.data))
    else:
        raise HttpError(400, f"input {INPUT!r} must be BYTES [N] (encoded images) or UINT8 "
                        f"[N, H, W, 3] (BGR pixels), got {tensor.datatype} {tensor.shape}")
    if not 1 <= len(images) <= service.max_batch:
        raise HttpError(400, f"input {INPUT!r} holds {len(images)} images; send 1 to "
                        f"{service.max_batch} (the model's max_batch_size) per request")
    return images


def _check_sizes(sizes: list[tuple[int, int] | None], wanted: dict[str, bool]) -> None:
    """400 for images of different sizes where an output is one [N, H, W] tensor."""
    known = {s for s in sizes if s is not None}
    per_pixel = [n for n in wanted if n in ("labels", "labelids", CONFIDENCE)]
    if len(known) > 1 and per_pixel:
        raise HttpError(400, f"the images are of different sizes {sorted(known)}, but "
                        f"{per_pixel[0]} is one [N, H, W] tensor; send images of one size per "
                        "request")


def _answer(service: Service, preds: list[np.ndarray], wanted: dict[str, bool],
            header: dict[str, Any], maps: list[np.ndarray]) -> tuple[bytes, int | None]:
    """The response body; `maps`: each image's float32 confidence (when it is wanted)."""
    from ocrnet.data.cityscapes import TRAIN_TO_LABEL
    from ocrnet.work.confidence import confidence_png

    _check_sizes([p.shape for p in preds], wanted)
    classes = len(service.manifest.get("classes") or []) or 19
    outputs = []
    for name, binary in wanted.items():
        if name == "labels":
            array = np.stack(preds)
        elif name == "labelids":
            array = np.stack([TRAIN_TO_LABEL[p] for p in preds])
        elif name == CONFIDENCE:
            array = np.stack([confidence_png(m) for m in maps])
        else:
            array = np.stack([np.bincount(p.ravel(), minlength=256)[:classes] / p.size
                              for p in preds]).astype(np.float32)
        outputs.append((name, OUTPUTS[name], array, binary))
    return encode_response(header, outputs)
