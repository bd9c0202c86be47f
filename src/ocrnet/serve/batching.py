"""Dynamic batching: single preprocessed images in, one inference thread, batches out.

Request handlers `submit` one preprocessed image each and get a `concurrent.futures.Future`
back (thread-safe, so the event loop awaits it through `asyncio.wrap_future` and never blocks).
One thread owns the engine (engines are not shared across threads): it takes the oldest image,
waits at most `max_wait_s` from that image's arrival for up to `max_batch - 1` more of the same
shape, pads a static batch with zeros, infers, and resolves the futures. While it infers, the
handlers' worker threads decode and preprocess the next batch's images.

A future's state is the hand-off: the thread moves each taken image to running with
`set_running_or_notify_cancel`, so an image whose future was cancelled (its client left, or it
waited past its deadline) is dropped, and one already running can no longer be cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

#: infer(batch (N, 3, H, W) float32, sizes [(H, W)] * N) -> N label maps at those sizes.
InferFn = Callable[[np.ndarray, list[tuple[int, int]]], list[np.ndarray]]

log = logging.getLogger("ocrnet.serve")


@dataclass(eq=False)
class Pending:
    """One submitted image: its future resolves to the (H, W) uint8 prediction."""

    image: np.ndarray  # (3, h, w) float32, preprocessed
    size: tuple[int, int]  # the original (H, W) the prediction returns to
    on_start: Callable[[], None] | None = None  # called when it leaves the queue
    future: Future[np.ndarray] = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)
    batch_size: int = 0  # real images in the call that ran it, set before the future resolves


class Batcher:
    """Coalesce submitted images into engine calls made by one thread (see module doc).

    `pad_to`: a static batch size; every call is padded to it with zero images. `on_batch`
    (images, seconds) is called after each call, for metrics.
    """

    def __init__(self, infer: InferFn, *, max_batch: int, max_wait_s: float,
                 pad_to: int | None = None,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1 or (pad_to is not None and max_batch > pad_to):
            raise ValueError(f"max_batch must be within 1..{pad_to or 'inf'}, got {max_batch}")
        self._infer = infer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.pad_to = pad_to
        self._on_batch = on_batch
        self._queue: deque[Pending] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="ocrnet-infer", daemon=True)
        self._started = False

    # --- the handlers' side -----------------------------------------------------------------
    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def submit(self, image: np.ndarray, size: tuple[int, int],
               on_start: Callable[[], None] | None = None) -> Pending:
        """Queue one image; cancel `Pending.future` to withdraw it while it waits."""
        item = Pending(image, size, on_start)
        with self._cond:
            if self._closing:
                raise RuntimeError("the batcher is closed")
            self._queue.append(item)
            self._cond.notify()
        return item

    @property
    def depth(self) -> int:
        """Images queued for inference (cancelled ones may still be counted until skipped)."""
        return len(self._queue)

    def close(self, timeout: float | None = None) -> None:
        """Stop taking new images, infer every queued one, then end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._started:
            self._thread.join(timeout)

    # --- the inference thread ---------------------------------------------------------------
    def _take(self) -> list[Pending] | None:
        """The next batch: same shape as the oldest image, full or out of waiting time."""
        with self._cond:
            while True:
                while self._queue and self._queue[0].future.cancelled():
                    self._queue.popleft()
                if self._queue:
                    break
                if self._closing:
                    return None
                self._cond.wait()
            first = self._queue[0]
            deadline = first.arrived + self.max_wait_s
            while True:
                batch = self._matching(first.image.shape)
                left = deadline - time.monotonic()
                if len(batch) >= self.max_batch or left <= 0 or self._closing:
                    break
                self._cond.wait(left)
            for item in batch:
                self._queue.remove(item)
            return batch

    def _matching(self, shape: tuple[int, ...]) -> list[Pending]:
        batch = []
        for item in self._queue:
            if item.image.shape == shape and not item.future.cancelled():
                batch.append(item)
                if len(batch) == self.max_batch:
                    break
        return batch

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            for item in taken:
                if item.on_start is not None:
                    item.on_start()
            live = [item for item in taken if item.future.set_running_or_notify_cancel()]
            if live:
                self._run_batch(live)

    def _run_batch(self, items: list[Pending]) -> None:
        images = [item.image for item in items]
        sizes = [item.size for item in items]
        if self.pad_to is not None and len(items) < self.pad_to:
            # Padding keeps a static graph's shape; each image's result is independent of its
            # neighbours (inference mode), so the padded slots are computed and dropped.
            pad = np.zeros_like(images[0])
            images += [pad] * (self.pad_to - len(items))
            sizes += [tuple(pad.shape[1:])] * (self.pad_to - len(items))  # type: ignore[list-item]
        start = time.perf_counter()
        try:
            preds = self._infer(np.stack(images), sizes)
        except BaseException as err:  # every waiter must hear of it
            for item in items:
                item.future.set_exception(err)
            return
        seconds = time.perf_counter() - start
        if self._on_batch is not None:
            try:
                self._on_batch(len(items), seconds)
            except Exception:  # metrics must never stop the inference thread
                log.exception("ocrnet serve: recording a batch failed")
        for item, pred in zip(items, preds, strict=False):
            item.batch_size = len(items)
            item.future.set_result(pred)
