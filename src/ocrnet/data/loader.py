"""Parallel decode + preprocess with bounded prefetch: memory stays flat however many images.

A thread pool does the work (cv2's decode and resize release the GIL, so threads scale without
the pickling cost of processes); at most `prefetch` samples are in flight, and batches are yielded
in the samples' order. Consecutive samples of equal preprocessed shape share a batch.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cv2
import numpy as np

from ocrnet.data.cityscapes import Sample, read_label
from ocrnet.data.images import DEFAULT_MAX_PIXELS, read_image
from ocrnet.data.transforms import DEFAULT_SCALE, Scale, preprocess
from ocrnet.errors import BadFileError, DataError, check_int

# BadFileError lives in ocrnet.errors (one family with the image readers' errors); re-exported.
__all__ = ["BadFileError", "Batch", "LoadedSample", "Loader", "SkippedFile", "bounded_map",
           "load_sample"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SkippedFile:
    """A file `skip_bad` passed over, and why (the `DataError` message)."""

    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class Batch:
    """Images (N, 3, H, W) float32 normalized, labels (original-size train ids, or None),
    samples, and each image's original (H, W). Unpacks as `images, labels, samples`."""

    images: np.ndarray
    labels: list[np.ndarray | None]
    samples: list[Sample]
    sizes: list[tuple[int, int]] = field(default_factory=list)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.images, self.labels, self.samples))

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class LoadedSample:
    """One decoded, preprocessed sample with its original (H, W)."""

    sample: Sample
    image: np.ndarray  # (3, H, W) float32
    label: np.ndarray | None
    size: tuple[int, int]


def load_sample(
    sample: Sample, *, scale: Scale = DEFAULT_SCALE, labels: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedSample:
    """Decode and preprocess one sample; raise `BadFileError` naming the file at fault.

    Image and label sizes are checked against `max_pixels` from their headers, before decoding.
    """
    try:
        img = read_image(sample.image, max_pixels=max_pixels)
    except DataError as err:
        raise BadFileError(sample.image, str(err)) from None
    size = (int(img.shape[0]), int(img.shape[1]))
    label = None
    if labels and sample.label is not None:
        try:
            label = read_label(sample.label, sample.label_format or "trainIds",
                               max_pixels=max_pixels)
        except DataError as err:
            raise BadFileError(sample.label, str(err)) from None
        if label.shape != size:
            raise BadFileError(
                sample.label,
                f"label {sample.label} is {label.shape[1]}x{label.shape[0]} but image "
                f"{sample.image} is {size[1]}x{size[0]} (WxH); they must be the same size",
            )
    try:
        image = preprocess(img, scale)
    except (cv2.error, ValueError, MemoryError) as err:  # absurd proportions, no memory
        raise BadFileError(sample.image, f"cannot preprocess image {sample.image} "
                           f"({size[1]}x{size[0]} WxH): {str(err).strip()[-200:]}") from None
    return LoadedSample(sample, image, label, size)


class Loader:
    """Iterate `Batch`es over `samples`, decoding ahead on `workers` threads.

    At most `prefetch` samples are decoded ahead of the consumer (plus the batch being
    assembled), so memory does not grow with the dataset. With `skip_bad=True` a sample whose
    image or label is unreadable, has unknown ids or mismatched sizes is dropped and recorded in
    `skipped`; otherwise its `DataError` propagates.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        batch_size: int = 1,
        scale: Scale = DEFAULT_SCALE,
        workers: int | None = None,
        prefetch: int | None = None,
        skip_bad: bool = False,
        labels: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        check_int(batch_size, "batch_size")
        if workers is not None:
            check_int(workers, "workers")
        if prefetch is not None:
            check_int(prefetch, "prefetch")
        check_int(max_pixels, "max_pixels")
        self.samples = list(samples)
        self.batch_size = batch_size
        self.scale = scale
        self.workers = workers or min(4, os.cpu_count() or 1)
        # Enough in flight to keep every worker busy while a batch is consumed.
        self.prefetch = max(1, prefetch if prefetch is not None else 2 * self.workers)
        self.skip_bad = skip_bad
        self.labels = labels
        self.max_pixels = max_pixels
        self.skipped: list[SkippedFile] = []

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Batch]:
        self.skipped = []
        results = bounded_map(
            lambda s: load_sample(s, scale=self.scale, labels=self.labels,
                                  max_pixels=self.max_pixels),
            self.samples, workers=self.workers, prefetch=self.prefetch,
        )
        group: list[LoadedSample] = []
        for future in results:
            try:
                item = future.result()
            except BadFileError as err:
                if not self.skip_bad:
                    raise
                self.skipped.append(SkippedFile(str(err.path), err.reason))
                continue
            if group and item.image.shape != group[0].image.shape:
                yield _collate(group)
                group = []
            group.append(item)
            if len(group) == self.batch_size:
                yield _collate(group)
                group = []
        if group:
            yield _collate(group)


def bounded_map(
    fn: Callable[[T], R], items: Iterable[T], *, workers: int, prefetch: int
) -> Iterator[Future[R]]:
    """Run `fn` over `items` on `workers` threads, yielding finished futures in input order.

    At most `prefetch` calls are queued or running at any time, so results never pile up
    faster than the consumer takes them. Call `.result()` on each to get the value or the error.
    """
    todo = iter(items)
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="ocrnet-load") as pool:

        def submit_next() -> None:
            for item in todo:
                pending.append(pool.submit(fn, item))
                return

        try:
            for _ in range(max(1, prefetch)):
                submit_next()
            while pending:
                future = pending.popleft()
                future.exception()  # wait here, so the next submission keeps `prefetch` bound
                submit_next()
                yield future
        finally:
            # The consumer stopped early or an error escaped: drop queued work so the
            # pool's shutdown waits only for the few calls already running.
            for future in pending:
                future.cancel()


def _collate(items: list[LoadedSample]) -> Batch:
    # A batch of one is a view, not a copy of the (large) preprocessed image.
    images = items[0].image[None] if len(items) == 1 else np.stack([it.image for it in items])
    return Batch(
        images=images,
        labels=[it.label for it in items],
        samples=[it.sample for it in items],
        sizes=[it.size for it in items],
    )
