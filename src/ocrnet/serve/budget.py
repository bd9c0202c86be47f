"""The memory budget behind `--max-inflight-mb`: bytes that admitted requests may hold at once.

A request reserves its body as the bytes arrive, then, before anything is decoded, what its
image will cost from the header's size (`image_cost`): the decoded pixels, the logits -> labels
working set at the original size, the labels and the encoded answer; a request in a test mode or
with a confidence map (`ocrnet.serve.modes`) reserves that mode's working set instead
(`mode_cost`). A reservation that does not fit is refused at once (503 with `Retry-After`), so
memory is counted before it is allocated and the process never grows past the budget by what
requests claim. Everything is released exactly once when the request ends, whatever way it ends.
"""

from __future__ import annotations

import math
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocrnet.work.modes import Mode

#: Bytes per original-size pixel an admitted image may hold: BGR decode (3), logits -> labels
#: working set (~10: one resized float32 channel, the running max, labels, a mask; see
#: `ocrnet.data.transforms.logits_to_labels`), the labels (1), and encoding (8: a color or
#: overlay rendering, the original kept for an overlay, the PNG).
BYTES_PER_PIXEL = 22
#: Bytes per network-input pixel: the preprocessed float32 image (3 x 4).
BYTES_PER_INPUT_PIXEL = 12
#: Bytes of one float32 value.
F32 = 4
#: Bytes per original-size pixel a confidence map adds: `confidence_at` streams the classes
#: through about six (H, W) float32 planes (running max and sum, the next max, one resized
#: class, two temporaries; measured 24 B/px with the map itself), after the logits -> labels
#: working set (10 of BYTES_PER_PIXEL) is freed: 14, rounded up.
CONFIDENCE_BYTES_PER_PIXEL = 16
#: The default budget's share of the machine's memory (or of the cgroup's limit, if lower).
DEFAULT_FRACTION = 0.5


def machine_memory() -> int:
    """Physical memory in bytes, or the cgroup (container) limit if that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_budget_mb() -> float:
    """`--max-inflight-mb`'s default: half the machine's (or container's) memory."""
    return DEFAULT_FRACTION * machine_memory() / (1 << 20)


def image_cost(height: int, width: int, input_pixels: int) -> int:
    """Bytes one admitted image of `height` x `width` may hold (see the module doc)."""
    return BYTES_PER_PIXEL * height * width + BYTES_PER_INPUT_PIXEL * input_pixels


def mode_cost(height: int, width: int, mode: Mode, *, resized: tuple[int, int] | None,
              classes: int, per_call: int, confidence: bool) -> int:
    """Bytes one image of `height` x `width` may hold when it runs `predict_image` in `mode`
    (`ocrnet.work.modes`), with its confidence map if `confidence`: `image_cost` (at the
    `resized` (h, w) input; aug has none) plus the mode's own working set, each the largest
    moment of that mode's code:

    - whole: the (C, h, w) float32 logits at the network's size, held while the labels and
      the map are made from them (the batcher's path returns labels only);
    - slide: one engine call's tiles and their logits (`per_call` x (3 + C) float32 crops), the
      (C, h, w) float32 sum and the (h, w) float32 count;
    - aug: the largest ratio's view (resized BGR, normalized float32, the batch of views and
      their logits, one un-flipped copy), one ratio at a time; and three (C, H, W) float32 at
      the original size: the running softmax sum, and while a view is added its resized
      logits and their softmax (`softmax_at`; measured 3 x C x 4 B/px);
    - confidence: CONFIDENCE_BYTES_PER_PIXEL at the original size.
    """
    pixels = height * width
    if mode.name == "aug":
        from ocrnet.work.modes import aug_size

        views = 2 if mode.flip else 1
        per_view_pixel = 3 + 12 + views * (12 + classes * F32) + classes * F32
        view = max(math.prod(aug_size(height, width, r)) for r in mode.ratios)
        cost = image_cost(height, width, 0) + per_view_pixel * view + 3 * classes * F32 * pixels
    else:
        if resized is None:
            raise ValueError(f"mode {mode.name} runs a resized input: pass resized=(h, w)")
        inputs = resized[0] * resized[1]
        cost = image_cost(height, width, inputs)
        if mode.name == "slide":
            if mode.crop is None:
                raise ValueError("slide needs its crop: call Mode.for_engine(engine) first")
            crop = mode.crop.height * mode.crop.width
            cost += per_call * (3 + classes) * F32 * crop + (classes + 1) * F32 * inputs
        else:
            cost += classes * F32 * inputs
    return cost + (CONFIDENCE_BYTES_PER_PIXEL * pixels if confidence else 0)


class Budget:
    """A thread-safe byte counter with a ceiling; `Reservation`s take from it and give back."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.used = 0
        self._lock = threading.Lock()

    def reservation(self) -> Reservation:
        return Reservation(self)

    def _take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def _give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class Reservation:
    """What one request holds of a `Budget`; `grow` reserves more, `release` gives all back."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.held = 0

    def grow(self, n: int) -> bool:
        """Reserve `n` more bytes; False (nothing taken) if the budget cannot hold them."""
        if n <= 0:
            return True
        if not self.budget._take(n):
            return False
        self.held += n
        return True

    def release(self) -> None:
        held, self.held = self.held, 0
        if held:
            self.budget._give(held)


#: After a request that held this much, freed memory is handed back to the OS (`trim`).
TRIM_AFTER_BYTES = 64 << 20


def trim() -> None:
    """Give freed heap memory back to the OS (glibc's `malloc_trim`; a no-op elsewhere).

    Large images leave many freed blocks of a few MB in glibc's per-thread arenas, which it
    keeps for reuse: without this the process's RSS stays hundreds of MB above its start after
    a burst of 60 MP requests, although nothing holds that memory.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        pass
