"""`GET /`: one self-contained HTML page to try the service in a browser (no build step, no
CDN, works offline). It calls /v1: the overlay and the JSON summary of the picked image, and
shows them beside the original with the class fractions as a bar chart, the latency and the
batch size the request was inferred in. The page is package data (`index.html` here)."""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse


@functools.cache
def page_html() -> str:
    """The page's HTML, read once from the installed package."""
    return resources.files(__name__).joinpath("index.html").read_text(encoding="utf-8")


async def index() -> HTMLResponse:
    return HTMLResponse(page_html())


def add_page(app: FastAPI) -> None:
    """Serve the page at `/` (left out of the OpenAPI schema)."""
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
