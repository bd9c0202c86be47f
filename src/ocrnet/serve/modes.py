"""`POST /v1/segment?mode=slide|aug` and `format=confidence`: one image outside the batcher.

A test mode runs its own batch (slide's tiles, aug's views), and a confidence map needs the
logits, so these requests skip the dynamic batcher: each runs `ocrnet.work.modes.predict_image`
(predict's own step, so the answer equals `ocrnet predict --mode ... --confidence`) on the
service's mode thread (`Service.mode_pool`), holding its engine lock so it never overlaps a
batch; decoding and encoding run on the service's worker threads. Admission reserves the mode's
own working set (`ocrnet.serve.budget.mode_cost`). `mode=slide` uses the package's own input as
the crop (two thirds of it as the stride), so a static package answers images of any size and
aspect ratio; `mode=aug` (mmseg's ratios, with flips) needs a dynamic package and is refused
(422) on a static one, with the reason. The v2 protocol's `confidence` output runs here too
(`predict_with_mode`, whole mode).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from ocrnet.serve.body import image_work, read_image
from ocrnet.serve.config import FORMATS
from ocrnet.serve.errors import HttpError

if TYPE_CHECKING:
    from ocrnet.serve.budget import Reservation
    from ocrnet.serve.service import Service
    from ocrnet.work.modes import Mode, ModePrediction

CONFIDENCE = "confidence"


async def segment_with_mode(request: Request, service: Service, fmt: str, mode: str,
                            opacity: float, held: Reservation) -> Response:
    """Answer one request in `mode` (or with the confidence PNG) as predict would; the body is
    read and admitted under the same memory budget and queue as the batcher's requests."""
    from ocrnet.errors import OcrnetError
    from ocrnet.work.formats import check_choice, check_opacity
    from ocrnet.work.modes import Mode

    start = time.monotonic()
    try:
        if fmt != CONFIDENCE:
            check_choice(fmt, [*FORMATS, CONFIDENCE], "format")
        check_opacity(opacity)
        assert service.engine is not None  # check_ready() passed: the engine is loaded
        parsed = Mode.parse(mode, flip=mode == "aug").for_engine(service.engine)
        service.mode_scale(parsed)  # aug under --scale: refused before the body is read
    except OcrnetError as err:
        raise HttpError(422, str(err)) from None
    data = await read_image(request, service.config, held, service.budget)
    ticket = service.admit(data, held, parsed, confidence=fmt == CONFIDENCE)
    try:
        pred, image = await unless_unfit(request, predict_with_mode(
            service, data, parsed, confidence=fmt == CONFIDENCE))
    finally:
        ticket.release()
    del data
    content = await asyncio.get_running_loop().run_in_executor(
        service.lane(pred.labels.size), _encode, pred, image, fmt, opacity)
    headers = {"X-Ocrnet-Mode": parsed.name,
               "X-Ocrnet-Seconds": f"{time.monotonic() - start:.3f}"}
    if isinstance(content, dict):
        return JSONResponse({**content, **parsed.to_dict()}, headers=headers)
    return Response(content, media_type="image/png", headers=headers)


async def unless_unfit(request: Request, work: Any) -> Any:
    """`image_work`, with the engine's refusals (e.g. whole + confidence at an aspect ratio a
    static package lacks, a package without logits) answered 422 with their one line."""
    from ocrnet.errors import OcrnetError

    try:
        return await image_work(request, work)
    except OcrnetError as err:
        raise HttpError(422, str(err)) from None


async def predict_with_mode(service: Service, data: bytes | np.ndarray, mode: Mode, *,
                            confidence: bool) -> tuple[ModePrediction, np.ndarray]:
    """One admitted image (encoded, or BGR pixels) through `predict_image` in `mode`: decoded on
    the service's worker threads, predicted on its mode thread. Returns the prediction and the
    decoded image (an overlay's background)."""
    from ocrnet.serve.service import image_size

    loop = asyncio.get_running_loop()
    size = image_size(data)
    if isinstance(data, np.ndarray):
        image = data
    else:
        image = await loop.run_in_executor(service.lane(size[0] * size[1] if size else 0),
                                           _decode, data, service.config.max_pixels)
    pred = await loop.run_in_executor(service.mode_pool, _predict, service, image, mode,
                                      confidence)
    return pred, image


def _decode(data: bytes, max_pixels: int) -> np.ndarray:
    import cv2

    from ocrnet.data.images import decode_image

    return decode_image(data, source="the request body", max_pixels=max_pixels,
                        flags=cv2.IMREAD_COLOR)


def _predict(service: Service, image: np.ndarray, mode: Mode,
             confidence: bool) -> ModePrediction:
    from ocrnet.work.modes import predict_image

    engine = service.engine
    assert engine is not None
    with service.engine_lock:  # never alongside a batch of the batcher
        return predict_image(engine, image, mode, scale=service.mode_scale(mode),
                             resize=service.config.resize, confidence=confidence)


def _encode(pred: ModePrediction, image: np.ndarray, fmt: str,
            opacity: float) -> bytes | dict[str, Any]:
    from ocrnet.visualize import encode_png
    from ocrnet.work.confidence import confidence_png
    from ocrnet.work.formats import encode_prediction, prediction_summary

    if pred.confidence is not None:
        return encode_png(confidence_png(pred.confidence))
    rendering = FORMATS[fmt]
    if rendering is None:
        return prediction_summary(pred.labels)
    return encode_prediction(pred.labels, rendering, image_bgr=image, opacity=opacity)
