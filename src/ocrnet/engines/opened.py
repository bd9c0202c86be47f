"""An engine for the length of one command: the caller's own (left open) or one opened here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ocrnet.engines.base import Engine


@contextmanager
def opened_engine(model: Engine | str | os.PathLike[str], *, device: str,
                  trust_checkpoint: bool, trust_package: bool,
                  threads: int | None) -> Iterator[tuple[Engine, str]]:
    """Yield `(engine, name)`. An open `Engine` is used as it is and left open (its
    `display_name` names it); a path is opened with `ocrnet.engines.open_model` on `device`
    (`threads` inference threads when given) and closed on leaving, also on an error."""
    if isinstance(model, Engine):
        yield model, model.display_name
        return
    from ocrnet.engines import open_model  # lazy: imports a backend

    engine = open_model(model, device=device, trust_checkpoint=trust_checkpoint,
                        trust_package=trust_package, **({"threads": threads} if threads else {}))
    try:
        yield engine, str(model)
    finally:
        engine.close()
