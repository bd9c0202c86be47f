"""The dynamic batcher alone, over a fake engine: coalescing, padding, cancellation, draining."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

from ocrnet.serve.batching import Batcher
from ocrnet.serve.config import ServeConfig


class FakeEngine:
    """labels = the image's first value everywhere; records each call's batch shape."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[int, ...]] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, batch: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        self.gate.wait(5)
        self.calls.append(batch.shape)
        time.sleep(self.delay)
        return [np.full(size, img[0, 0, 0], np.uint8) for img, size in zip(batch, sizes,
                                                                          strict=True)]


def image(value: int, h: int = 4, w: int = 8) -> np.ndarray:
    return np.full((3, h, w), value, np.float32)


def test_concurrent_images_share_a_padded_static_batch() -> None:
    engine = FakeEngine()
    engine.gate.clear()  # hold the first call so the others queue up behind it
    batcher = Batcher(engine, max_batch=4, max_wait_s=0.05, pad_to=4)
    batcher.start()
    first = batcher.submit(image(9), (4, 8))
    time.sleep(0.1)  # the first call has started (alone, padded) and waits at the gate
    rest = [batcher.submit(image(v), (2, 3)) for v in range(5)]
    engine.gate.set()
    assert first.future.result(5)[0, 0] == 9 and first.batch_size == 1
    values = [int(p.future.result(5)[0, 0]) for p in rest]
    assert values == [0, 1, 2, 3, 4]
    assert [p.future.result().shape for p in rest] == [(2, 3)] * 5  # at the original size
    assert engine.calls == [(4, 3, 4, 8)] * 3  # always the static batch: 1, 4, then 1 + pads
    assert [p.batch_size for p in rest] == [4, 4, 4, 4, 1]
    batcher.close()


def test_only_images_of_one_shape_share_a_call() -> None:
    engine = FakeEngine()
    engine.gate.clear()
    batcher = Batcher(engine, max_batch=8, max_wait_s=0.01)
    batcher.start()
    items = [batcher.submit(image(i, h=4 + i % 2), (4, 4)) for i in range(6)]
    engine.gate.set()
    assert [int(p.future.result(5)[0, 0]) for p in items] == list(range(6))
    assert sorted(engine.calls) == [(3, 3, 4, 8), (3, 3, 5, 8)]
    batcher.close()


def test_a_cancelled_image_never_reaches_the_engine() -> None:
    engine = FakeEngine()
    engine.gate.clear()
    batcher = Batcher(engine, max_batch=2, max_wait_s=0.0)
    batcher.start()
    running = batcher.submit(image(1), (4, 8))
    time.sleep(0.1)
    waiting = batcher.submit(image(2), (4, 8))
    assert waiting.future.cancel()  # still queued: withdrawn
    assert not running.future.cancel()  # already running: cannot be withdrawn
    engine.gate.set()
    assert running.future.result(5)[0, 0] == 1
    with pytest.raises(CancelledError):
        waiting.future.result(0)
    batcher.close()
    assert engine.calls == [(1, 3, 4, 8)]


def test_close_drains_the_queue_and_errors_reach_every_waiter() -> None:
    def broken(batch: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        raise RuntimeError("engine exploded")

    batcher = Batcher(broken, max_batch=2, max_wait_s=1.0)
    batcher.start()
    items = [batcher.submit(image(i), (4, 8)) for i in range(3)]
    batcher.close(timeout=5)  # does not wait out the 1 s window: closing flushes at once
    for item in items:
        with pytest.raises(RuntimeError, match="exploded"):
            item.future.result(0)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(image(0), (4, 8))


def test_the_default_window_follows_the_measured_inference_time() -> None:
    assert ServeConfig().max_wait_s(0.5) == pytest.approx(0.05)
    assert ServeConfig().max_wait_s(0.001) == pytest.approx(0.001)
    assert ServeConfig().max_wait_s(30.0) == pytest.approx(0.1)
    assert ServeConfig(max_wait_ms=7).max_wait_s(30.0) == pytest.approx(0.007)
    with pytest.raises(Exception, match="max_queue"):
        ServeConfig(max_queue=0)
