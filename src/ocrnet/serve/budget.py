"""The memory budget behind `--max-inflight-mb`: bytes that admitted requests may hold at once.

A request reserves its body as the bytes arrive, then, before anything is decoded, what its
image will cost from the header's size (`image_cost`): the decoded pixels, the logits -> labels
working set at the original size, the labels and the encoded answer. A reservation that does not
fit is refused at once (503 with `Retry-After`), so memory is counted before it is allocated and
the process never grows past the budget by what requests claim. Everything is released exactly
once when the request ends, whatever way it ends.
"""

from __future__ import annotations

import os
import threading

#: Bytes per original-size pixel an admitted image may hold: BGR decode (3), logits -> labels
#: working set (~10: one resized float32 channel, the running max, labels, a mask; see
#: `ocrnet.data.transforms.logits_to_labels`), the labels (1), and encoding (8: a color or
#: overlay rendering, the original kept for an overlay, the PNG).
BYTES_PER_PIXEL = 22
#: Bytes per network-input pixel: the preprocessed float32 image (3 x 4).
BYTES_PER_INPUT_PIXEL = 12
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
