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


class BadFileError(DataError):
    """One input file (image, label, prediction) cannot be used; `path` names it.

    The family that `--skip-bad` skips: a loader records `path` and `reason` and moves on.
    """

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


class BadImageError(BadFileError):
    """An image or label file cannot be decoded (corrupt, truncated, not an image)."""


class ImageTooLargeError(BadFileError):
    """An image's header claims more pixels than the limit; refused before decoding."""

    def __init__(self, path: object, reason: str, *, height: int, width: int,
                 max_pixels: int) -> None:
        super().__init__(path, reason)
        self.height = height
        self.width = width
        self.max_pixels = max_pixels


class OutputError(OcrnetError):
    """A file the tool writes cannot be written (disk full, permission, a path under a file).

    Raised before anything existing at the target is touched: the earlier file stays intact.
    """


class PackageError(OcrnetError):
    """An engine package is missing, tampered with, or from another format version."""


class ArgumentError(OcrnetError):
    """An argument of the Python API (or its CLI option) has a value that cannot work."""


def check_int(value: object, name: str, *, minimum: int = 1) -> int:
    """`value` if it is an integer >= `minimum`, else `ArgumentError` naming `name`.

    The API validates its own arguments, so a bad value fails the same way from Python and from
    the CLI, before any work starts (not as a traceback deep in a thread pool).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class BackendUnavailableError(OcrnetError):
    """A backend's Python package is not installed."""

    def __init__(self, backend: str, module: str, extra: str) -> None:
        super().__init__(
            f"backend {backend!r} needs the Python package {module!r}, which is not installed; "
            f"install it with: pip install 'ocrnet[{extra}]'"
        )
