"""Choosing a deterministic subset of a sorted list (calibration images, compare's images)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def pick_evenly(items: Sequence[T], count: int) -> list[T]:
    """`count` items spread evenly over `items`, first and last included, in their order.

    All of them when `count >= len(items)`; none when `count < 1`. Spreading, rather than
    taking the first `count`, samples every city/sequence of a sorted Cityscapes split.
    """
    if count < 1 or not items:
        return []
    picks = np.linspace(0, len(items) - 1, num=min(count, len(items))).round().astype(int)
    return [items[i] for i in dict.fromkeys(picks.tolist())]
