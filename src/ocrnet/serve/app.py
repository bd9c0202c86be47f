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
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ocrnet.serve.config import ServeConfig
from ocrnet.serve.errors import add_error_handlers
from ocrnet.serve.metrics import CountAnswers
from ocrnet.serve.page import add_page
from ocrnet.serve.routes import add_routes
from ocrnet.serve.service import Service, resolve_max_batch, static_shape
from ocrnet.serve.v2 import add_v2_routes


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
    static_batch, _ = static_shape(read_package(path, verify=False).meta)
    resolve_max_batch(cfg.max_batch, static_batch, path)

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
    add_error_handlers(app)
    add_routes(app)
    app.add_middleware(CountAnswers)

    add_v2_routes(app)
    add_page(app)
    return app
