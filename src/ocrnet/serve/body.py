"""Reading a request's image: the body within its size, time and memory limits, multipart,
client disconnects."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable
from typing import Any

from fastapi import Request

from ocrnet.serve.budget import Budget, Reservation
from ocrnet.serve.config import ServeConfig
from ocrnet.serve.errors import HttpError


async def read_body(request: Request, config: ServeConfig, held: Reservation) -> bytes:
    """The whole body, before the request takes a queue slot or anything is decoded.

    413 as soon as it is known to exceed `--max-body-mb`; 503 when the memory budget cannot
    hold the bytes received so far (`held` reserves them as they arrive); 408 and the connection
    closed when it has not all arrived within `config.read_deadline_s` (a slow or stalled client
    frees its connection instead of holding a place).
    """
    limit = config.max_body_bytes
    declared = request.headers.get("content-length", "")
    length = int(declared) if declared.isdigit() else None
    if length is not None and length > limit:
        raise _too_big(limit)
    seconds = config.read_deadline_s(length)
    try:
        async with asyncio.timeout(seconds):
            body = await _receive(request, limit, held)
    except TimeoutError:
        raise HttpError(408, f"the request body did not arrive within {seconds:.3g} s "
                        "(--read-timeout-s); the connection is closed",
                        {"Connection": "close"}) from None
    if not body:
        raise HttpError(400, "the request body is empty; send one encoded image (PNG, JPEG or "
                        "BMP) as the body or as a multipart file field")
    return body


async def _receive(request: Request, limit: int, held: Reservation) -> bytes:
    from starlette.requests import ClientDisconnect

    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > limit:
                raise _too_big(limit)
            if not held.grow(len(chunk)):
                raise over_budget(held.budget)
            body += chunk
    except ClientDisconnect:
        raise HttpError(499, "the client closed the connection while sending") from None
    return bytes(body)


def _too_big(limit: int) -> HttpError:
    return HttpError(413, f"the request body is over the limit of {limit:,} bytes "
                     "(--max-body-mb)")


def over_budget(budget: Budget, retry_after_s: float = 1.0) -> HttpError:
    """503: admitted requests already hold the memory budget (--max-inflight-mb)."""
    return HttpError(503, f"the server's memory budget for requests in flight "
                     f"({budget.limit / (1 << 20):,.0f} MB, --max-inflight-mb) is taken; retry "
                     "later", {"Retry-After": str(max(1, math.ceil(retry_after_s)))})


async def image_bytes(request: Request, body: bytes) -> bytes:
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


async def read_image(request: Request, config: ServeConfig, held: Reservation,
                     budget: Budget) -> bytes:
    """The request's one encoded image (raw body or multipart file), its bytes held in the
    memory budget; no queue slot is taken before it is complete."""
    body = await read_body(request, config, held)
    data = await image_bytes(request, body)
    if data is not body and not held.grow(len(data)):  # multipart: the file is a copy
        raise over_budget(budget)
    return data


async def image_work(request: Request, work: Awaitable[Any]) -> Any:
    """`unless_client_leaves`, with an image over --max-pixels answered 413 and an undecodable
    one 415 (every route that decodes images answers them alike)."""
    from ocrnet.errors import BadFileError, ImageTooLargeError

    try:
        return await unless_client_leaves(request, work)
    except ImageTooLargeError as err:
        raise HttpError(413, err.reason) from None
    except BadFileError as err:
        raise HttpError(415, err.reason) from None


async def unless_client_leaves(request: Request, work: Awaitable[Any]) -> Any:
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
