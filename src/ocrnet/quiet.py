"""Dependency noise, filtered at the call that makes it; ocrnet's own warnings still show.

`make demo` used to interleave its progress with 24 `torchvision is not installed. Skipping
torchvision::...` lines from the ONNX exporter (we export no torchvision op), a `FutureWarning`
from torch's pytree (`isinstance(treespec, LeafSpec)`), NNCF's INFO lines about each node it
leaves unquantized, and ONNX Runtime's advice to pre-process before quantizing (logged on the
root logger, which also installs a handler there as a side effect). `quiet_dependencies()`
wraps the export and quantization calls: inside it those loggers are raised, future and
deprecation warnings from modules other than ocrnet are ignored, and root-logger messages below
ERROR are dropped. Errors always pass; everything is restored on exit.

Nothing heavy is imported here: a logger is touched only if its package already made it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

#: Loggers raised to a level while a dependency call runs, and why.
LOGGER_LEVELS: dict[str, int] = {
    # one WARNING per torchvision op the exporter's registry cannot find; OCRNet uses none
    "torch.onnx._internal.exporter._registration": logging.ERROR,
}
#: Loggers whose console handlers are raised, not the logger itself: other handlers on it still
#: see INFO records (accuracy control reads NNCF's reverted-op lines through one of its own; a
#: log file the user asked NNCF for keeps everything).
HANDLER_LEVELS: dict[str, int] = {
    "nncf": logging.WARNING,  # "Not adding activation input quantizer for operation: ..."
}
#: Warning categories ignored inside the call unless an ocrnet module raised them.
QUIET_CATEGORIES: tuple[type[Warning], ...] = (FutureWarning, DeprecationWarning)
_NOT_OCRNET = r"(?!ocrnet(\.|$))"


class _DropRootChatter(logging.Filter):
    """Drops records logged on the root logger itself below ERROR (libraries calling
    `logging.warning(...)`; ocrnet logs under its own names, which this never sees)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _existing(name: str) -> logging.Logger | None:
    """The logger `name` if its package created it, without creating it (NNCF installs its
    own logger class: creating "nncf" before NNCF is imported would break NNCF)."""
    found = logging.Logger.manager.loggerDict.get(name)
    return found if isinstance(found, logging.Logger) else None


def _console_handlers(logger: logging.Logger | None) -> list[logging.Handler]:
    return [h for h in (logger.handlers if logger else ())
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


@contextlib.contextmanager
def quiet_dependencies() -> Iterator[None]:
    """Silence known dependency chatter for the duration of one call (see the module doc)."""
    root = logging.getLogger()
    root_handlers = list(root.handlers)
    restore: list[tuple[logging.Logger | logging.Handler, int]] = []
    for name, level in LOGGER_LEVELS.items():
        logger = logging.getLogger(name)  # plain loggers: creating one early is harmless
        restore.append((logger, logger.level))
        logger.setLevel(max(level, logger.level))
    for name, level in HANDLER_LEVELS.items():
        logger = _existing(name)
        for handler in _console_handlers(logger):
            restore.append((handler, handler.level))
            handler.setLevel(max(level, handler.level))
    chatter = _DropRootChatter()
    root.addFilter(chatter)
    try:
        with warnings.catch_warnings():
            for category in QUIET_CATEGORIES:
                warnings.filterwarnings("ignore", category=category, module=_NOT_OCRNET)
            yield
    finally:
        root.removeFilter(chatter)
        for target, level in restore:
            target.setLevel(level)
        if not root_handlers:  # undo the handler `logging.warning()` installs via basicConfig
            for handler in [h for h in root.handlers if h not in root_handlers]:
                root.removeHandler(handler)
