"""What one `ocrnet serve` instance is configured with, checked once, imported by the CLI.

Nothing heavy is imported here: `ocrnet serve --help` reads these defaults without loading
FastAPI, OpenCV or an engine. The same record configures uvicorn and every Ray Serve replica.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ocrnet.errors import ArgumentError, check_int
from ocrnet.work.formats import HTTP_FORMATS

HOST = "127.0.0.1"
PORT = 8000
#: Coalescing window by default: this fraction of one measured inference call (warm-up), within
#: the bounds below. Waiting 10% of a call for a full batch costs little next to running a
#: static batch padded with empty slots (a batch of 4 at 128x256 takes ~0.5 s here: 50 ms).
MAX_WAIT_FRACTION = 0.1
MAX_WAIT_BOUNDS_MS = (1.0, 100.0)
#: Requests admitted but not yet inferring (decoding, preprocessing or queued); beyond it 503.
MAX_QUEUE = 64
#: Longest a request may wait before its inference starts; beyond it 504.
TIMEOUT_S = 30.0
MAX_BODY_MB = 32.0
#: 64 MP: 32x a Cityscapes frame, checked from the header before anything is decoded.
MAX_PIXELS = 64_000_000
#: Batch size for a package with a dynamic batch axis and no --max-batch.
DYNAMIC_MAX_BATCH = 8

#: `format=` of POST /v1/segment -> the rendering `encode_prediction` makes (None: the JSON
#: summary): the one formats table, `ocrnet.work.formats`.
FORMATS = HTTP_FORMATS


@dataclass(frozen=True)
class ServeConfig:
    """Limits and knobs of one service; `None` means "from the package" or "from the CPU".

    `max_batch`: images per inference call (default: the package's static batch, else 8; a
    static batch is padded up to its size). `threads`: the engine's inference threads;
    `workers`: decode / preprocess / encode threads. `max_wait_ms`: how long a batch's first
    image waits for more (default: 10% of one warm-up inference, within 1..100 ms). `scale`:
    the keep-ratio resize limit as `ocrnet predict --scale` (default: a static package's own
    size, else 2048x1024).
    """

    max_batch: int | None = None
    max_wait_ms: float | None = None
    max_queue: int = MAX_QUEUE
    timeout_s: float = TIMEOUT_S
    max_body_mb: float = MAX_BODY_MB
    max_pixels: int = MAX_PIXELS
    threads: int | None = None
    workers: int | None = None
    device: str = "cpu"
    scale: tuple[int, int] | float | None = None
    resize: str = "logits"
    trust_package: bool = False

    def __post_init__(self) -> None:
        if self.max_batch is not None:
            check_int(self.max_batch, "max_batch")
        check_int(self.max_queue, "max_queue")
        check_int(self.max_pixels, "max_pixels")
        for name in ("threads", "workers"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name)
        for name, minimum in (("max_wait_ms", 0.0), ("timeout_s", 1e-3), ("max_body_mb", 1e-6)):
            value = getattr(self, name)
            if value is None and name == "max_wait_ms":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < minimum:
                raise ArgumentError(f"{name} must be a number >= {minimum:g}, got {value!r}")
        if self.resize not in ("logits", "labels"):
            raise ArgumentError(f"resize must be 'logits' or 'labels', got {self.resize!r}")

    def max_wait_s(self, batch_s: float) -> float:
        """The coalescing window, given the measured time of one inference call."""
        if self.max_wait_ms is not None:
            return self.max_wait_ms / 1000
        low, high = MAX_WAIT_BOUNDS_MS
        return min(max(MAX_WAIT_FRACTION * batch_s * 1000, low), high) / 1000

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * (1 << 20))

    def replace(self, **changes: object) -> ServeConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def require_serve() -> None:
    """Raise `OcrnetError` naming the extra if a package `ocrnet serve` needs is missing."""
    import importlib.util

    from ocrnet.errors import OcrnetError

    for module in ("fastapi", "uvicorn", "prometheus_client", "multipart"):
        if importlib.util.find_spec(module) is None:
            raise OcrnetError(f"`ocrnet serve` needs the Python package {module!r}, which is not "
                              "installed; install it with: pip install 'ocrnet[serve]'")
