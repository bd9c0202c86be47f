"""`POST /v1/segment?mode=slide|aug` and `format=confidence`: one image outside the batcher.

A test mode runs its own batch (slide's tiles, aug's views), and a confidence map needs the
logits, so these requests skip the dynamic batcher: each runs `ocrnet.work.modes.predict_image`
(predict's own step, so the answer equals `ocrnet predict --mode ... --confidence`) on a worker
thread, holding the service's engine lock so it never overlaps a batch. `mode=slide` uses the
package's own input as the crop (two thirds of it as the stride), so a static package answers
images of any size and aspect ratio; `mode=aug` (mmseg's ratios, with flips) needs a dynamic
package and is refused (422) on a static one, with the reason.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from ocrnet.serve.body import image_work, read_image
from ocrnet.serve.config import FORMATS
from ocrnet.serve.errors import HttpError

if TYPE_CHECKING:
    from ocrnet.serve.budget import Reservation
    from ocrnet.serve.service import Service

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
    except OcrnetError as err:
        raise HttpError(422, str(err)) from None
    data = await read_image(request, service.config, held, service.budget)
    ticket = service.admit(data, held)
    try:
        work = _work(service, data, parsed, fmt, opacity)
        content = await image_work(
            request, asyncio.get_running_loop().run_in_executor(None, work))
    except OcrnetError as err:  # e.g. whole + confidence at an aspect a static package lacks
        raise HttpError(422, str(err)) from None
    finally:
        ticket.release()
    headers = {"X-Ocrnet-Mode": parsed.name,
               "X-Ocrnet-Seconds": f"{time.monotonic() - start:.3f}"}
    if isinstance(content, dict):
        return JSONResponse({**content, **parsed.to_dict()}, headers=headers)
    return Response(content, media_type="image/png", headers=headers)


def _work(service: Service, data: bytes, mode: Any, fmt: str, opacity: float) -> Any:
    def run() -> bytes | dict[str, Any]:
        import cv2

        from ocrnet.data.images import decode_image
        from ocrnet.visualize import encode_png
        from ocrnet.work.confidence import confidence_png
        from ocrnet.work.formats import encode_prediction, prediction_summary
        from ocrnet.work.modes import predict_image

        image = decode_image(data, source="the request body",
                             max_pixels=service.config.max_pixels, flags=cv2.IMREAD_COLOR)
        engine = service.engine
        assert engine is not None
        with service.engine_lock:  # never alongside a batch of the batcher
            pred = predict_image(engine, image, mode, scale=mode.scale(engine,
                                                                        service.config.scale),
                                 resize=service.config.resize, confidence=fmt == CONFIDENCE)
        if pred.confidence is not None:
            return encode_png(confidence_png(pred.confidence))
        rendering = FORMATS[fmt]
        if rendering is None:
            return prediction_summary(pred.labels)
        return encode_prediction(pred.labels, rendering, image_bgr=image, opacity=opacity)

    return run
