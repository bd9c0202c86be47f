"""`ocrnet serve`: an HTTP segmentation service over one engine package.

`create_app(package, ...)` returns the FastAPI app (uvicorn on one machine, Ray Serve replicas
on a cluster: `ocrnet.serve.ray_serve.deploy`). FastAPI is imported on first use, so importing
`ocrnet.serve` alone costs nothing and a missing `ocrnet[serve]` extra is a one-line error.
"""

from __future__ import annotations

from typing import Any

from ocrnet.serve.config import ServeConfig, require_serve

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        require_serve()
        from ocrnet.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
