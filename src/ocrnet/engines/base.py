"""The one engine interface every backend implements (see docs/design.md).

An engine runs a model on a batch of preprocessed images (NCHW float32, normalised with the
mmseg mean/std) and returns per-pixel labels at the batch's H, W, and logits when asked.
Timing is not the engine's business: `ocrnet.bench` owns warm-up, clocks and statistics.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass
class InferResult:
    labels: np.ndarray  # (N, H, W) uint8 train ids
    logits: np.ndarray | None = None  # (N, C, H, W) float32 when requested


class Engine(abc.ABC):
    """Public `infer` checks arguments and state, then calls the backend's `_infer_impl`."""

    backend: ClassVar[str]

    def __init__(self) -> None:
        self._closed = False

    # --- the backend's part -------------------------------------------------------------
    @abc.abstractmethod
    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult: ...

    def _close_impl(self) -> None:  # noqa: B027 - optional hook
        pass

    # --- the shared part ------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        """What the engine runs: backend, precision, device, shapes (from the package)."""
        return getattr(self, "_metadata", {"backend": self.backend})

    def infer(self, batch: np.ndarray, *, return_logits: bool = False) -> InferResult:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a batch of shape (N, 3, H, W), got {batch.shape}")
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        return self._infer_impl(np.ascontiguousarray(batch), return_logits)

    def close(self) -> None:
        if not self._closed:
            self._close_impl()
            self._closed = True

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
