"""The user-error family: the CLI prints these in one or two lines and exits 1, no traceback."""

from __future__ import annotations


class OcrnetError(Exception):
    """A problem the user can fix: a bad path, a bad option, a corrupt file.

    The message says what is wrong, which file, and what to do.
    """


class CheckpointError(OcrnetError):
    """A checkpoint cannot be read or does not fit the model."""


class DataError(OcrnetError):
    """A dataset or image file is missing, corrupt or inconsistent."""


class PackageError(OcrnetError):
    """An engine package is missing, tampered with, or from another format version."""


class BackendUnavailableError(OcrnetError):
    """A backend's Python package is not installed."""

    def __init__(self, backend: str, module: str, extra: str) -> None:
        super().__init__(
            f"backend {backend!r} needs the Python package {module!r}, which is not installed; "
            f"install it with: pip install 'ocrnet[{extra}]'"
        )
