"""One progress bar for the verbs: tqdm on stderr, or a silent stand-in when progress is off."""

from __future__ import annotations

import sys
from typing import Any


class NoBar:
    """Does nothing tqdm's bar does: `with`, `update`, `set_postfix_str`, `close`."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(total: int, enabled: bool = True, desc: str = "", unit: str = "img") -> Any:
    """A tqdm bar over `total` items on stderr (rate and ETA in `unit`), or a `NoBar`.

    Use it as a context manager, or call `close()`; tqdm is imported only when shown.
    """
    if not enabled:
        return NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True)
