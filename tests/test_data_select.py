"""`ocrnet.data.select.pick_evenly`: the one "N spread over a sorted list" helper."""

from __future__ import annotations

from ocrnet.data.select import pick_evenly


def test_pick_evenly() -> None:
    items = list(range(10))
    assert pick_evenly(items, 3) == [0, 4, 9]  # first and last included (4.5 rounds to even)
    assert pick_evenly(items, 1) == [0]
    assert pick_evenly(items, 50) == items and pick_evenly(items, 0) == []
    assert pick_evenly([], 3) == []
