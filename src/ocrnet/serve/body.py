"""Reading a request's image: the body within `max_body_mb`, multipart, client disconnects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

from fastapi import Request

from ocrnet.serve.errors import HttpError


async def read_body(request: Request, limit: int) -> bytes:
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
