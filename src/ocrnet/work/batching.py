"""Prepared batch -> labels at each image's original size: the one step a kernel, serve, the
run report and a test-time mode's whole-image path share (`batch_labels`), with a static
package's fixed batch size handled once (`static_batch`, `static_slices`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ocrnet.engines.base import Engine

__all__ = ["batch_labels", "static_batch", "static_slices"]


def static_batch(engine: Engine) -> int | None:
    """The number of images a static package runs per call; None where the batch is dynamic."""
    shape = engine.metadata.get("input_shape") or []
    n = shape[0] if len(shape) == 4 else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def batch_labels(engine: Engine, images: np.ndarray, sizes: Sequence[tuple[int, int]],
                 resize: str) -> list[np.ndarray]:
    """A prepared batch (N, 3, h, w) -> one (H, W) uint8 train-id map per image at its original
    size: `Engine.labels_at` (mmseg's whole-image test path). The one place a kernel, serve
    and a test-time mode turn a batch into labels; a static package's batch size is handled
    by `static_slices`."""
    labels: list[np.ndarray] = []
    for part, at, real in static_slices(engine, images, sizes):
        labels += engine.labels_at(part, at, resize)[:real]
    return labels


def static_slices(engine: Engine, images: np.ndarray, sizes: Sequence[tuple[int, int]]
                  ) -> Iterator[tuple[np.ndarray, list[tuple[int, int]], int]]:
    """(batch, sizes, real) for each engine call that `images` needs: the whole batch where the
    engine takes any N; else slices of the static package's N, the last one padded with copies
    of its last image, whose results the caller drops (the first `real` are the images').
    An image's result does not depend on its batch neighbours, so the bytes are those of full
    batches."""
    n = static_batch(engine)
    if n is None or len(images) == n:
        yield images, list(sizes), len(images)
        return
    for start in range(0, len(images), n):
        part, at = images[start:start + n], list(sizes[start:start + n])
        real = len(part)
        if real < n:
            part = np.concatenate([part, np.repeat(part[-1:], n - real, axis=0)])
            at += [at[-1]] * (n - real)
        yield part, at, real
