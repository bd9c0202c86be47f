"""Reading images and labels with bounded memory: sizes from the header, checked before decoding.

Every image or label the tool reads goes through `decode_image` (bytes) or `read_image` (a
file). The header's width and height are parsed without decoding (PNG, JPEG, BMP, TIFF, WebP,
PNM) and checked against a pixel limit, so a 254-byte PNG claiming 60000x60000 pixels is refused
before OpenCV allocates anything. Formats whose header we do not parse are refused rather than
decoded unbounded. Every failure is a `BadFileError` (the family `--skip-bad` skips):
`ImageTooLargeError` for too many pixels, `BadImageError` for anything that does not decode.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import cv2
import numpy as np

from ocrnet import defaults
from ocrnet.errors import BadFileError, BadImageError, DataError, ImageTooLargeError

#: File suffixes the tool treats as images (folder scans in predict, compare, bench, calibration).
#: Exactly the formats `header_size` parses, so every one of them is size-checked before decoding.
IMAGE_SUFFIXES: frozenset[str] = frozenset({
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm",
})
#: 100 MP: above any real camera (a 1024x2048 Cityscapes frame is 2 MP), below what exhausts memory.
DEFAULT_MAX_PIXELS = defaults.MAX_PIXELS
# Bytes per pixel no accepted format exceeds uncompressed (16-bit RGBA = 8), plus room for
# metadata: a larger file cannot be an image within the pixel limit.
_MAX_BYTES_PER_PIXEL = 8
_SLACK_BYTES = 16 << 20


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a visible file whose suffix is in `IMAGE_SUFFIXES` (case-insensitive)."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


# --- headers ---------------------------------------------------------------------------------
def header_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(height, width) from an image's header, without decoding; None if not recognised.

    Recognises PNG, JPEG (baseline and progressive), BMP, TIFF (classic and BigTIFF, first page),
    WebP (lossy, lossless, extended) and PNM (P1-P6). Never raises on malformed input.
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    try:
        for parse in _PARSERS:
            size = parse(buf)
            if size is not None:
                return size
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _png(b: bytes) -> tuple[int, int] | None:
    if not b.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    if b[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", b[16:24])
    return height, width


def _jpeg(b: bytes) -> tuple[int, int] | None:
    if not b.startswith(b"\xff\xd8"):
        return None
    i, n = 2, len(b)
    while i < n:
        if b[i] != 0xFF:
            return None
        while i < n and b[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return None
        marker = b[i]
        i += 1
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers carry no length
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", b[i:i + 2])
        if length < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", b[i + 3:i + 7])
            return height, width
        i += length
    return None


def _bmp(b: bytes) -> tuple[int, int] | None:
    if not b.startswith(b"BM") or len(b) < 26:
        return None
    (dib,) = struct.unpack("<I", b[14:18])
    if dib == 12:  # BITMAPCOREHEADER
        width, height = struct.unpack("<HH", b[18:22])
    elif dib >= 16:
        width, height = struct.unpack("<ii", b[18:26])
    else:
        return None
    return abs(height), abs(width)  # negative height: rows stored top-down


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}  # SHORT, LONG, LONG8


def _tiff(b: bytes) -> tuple[int, int] | None:
    order = {b"II": "<", b"MM": ">"}.get(b[:2])
    if order is None:
        return None
    (magic,) = struct.unpack(order + "H", b[2:4])
    if magic == 42:
        (ifd,) = struct.unpack(order + "I", b[4:8])
        count_fmt, entry_size, value_at, count_size = "H", 12, 8, 2
    elif magic == 43:  # BigTIFF
        (ifd,) = struct.unpack(order + "Q", b[8:16])
        count_fmt, entry_size, value_at, count_size = "Q", 20, 12, 8
    else:
        return None
    (entries,) = struct.unpack(order + count_fmt, b[ifd:ifd + count_size])
    found: dict[int, int] = {}
    for k in range(min(entries, 4096)):
        at = ifd + count_size + k * entry_size
        tag, typ = struct.unpack(order + "HH", b[at:at + 4])
        if tag in (256, 257) and typ in _TIFF_TYPES:
            fmt, size = _TIFF_TYPES[typ]
            (found[tag],) = struct.unpack(order + fmt, b[at + value_at:at + value_at + size])
        if len(found) == 2:
            return found[257], found[256]
    return None


def _webp(b: bytes) -> tuple[int, int] | None:
    if b[:4] != b"RIFF" or b[8:12] != b"WEBP":
        return None
    chunk = b[12:16]
    if chunk == b"VP8 ":
        if b[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", b[26:30])
        return height & 0x3FFF, width & 0x3FFF
    if chunk == b"VP8L":
        if b[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", b[21:25])
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X":
        if len(b) < 30:
            return None
        width = int.from_bytes(b[24:27], "little") + 1
        height = int.from_bytes(b[27:30], "little") + 1
        return height, width
    return None


def _pnm(b: bytes) -> tuple[int, int] | None:
    if len(b) < 2 or b[0:1] != b"P" or b[1:2] not in b"123456":
        return None
    tokens: list[int] = []
    i, n = 2, min(len(b), 4096)
    while len(tokens) < 2 and i < n:
        c = b[i:i + 1]
        if c == b"#":
            while i < n and b[i:i + 1] not in (b"\n", b"\r"):
                i += 1
        elif c.isspace():
            i += 1
        elif c.isdigit():
            j = i
            while j < n and b[j:j + 1].isdigit():
                j += 1
            if j - i > 9:
                return None
            tokens.append(int(b[i:j]))
            i = j
        else:
            return None
    if len(tokens) < 2:
        return None
    return tokens[1], tokens[0]


_PARSERS = (_png, _jpeg, _bmp, _tiff, _webp, _pnm)


# --- decoding --------------------------------------------------------------------------------
def _check_limit(max_pixels: int) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise DataError(f"max_pixels must be a positive integer, got {max_pixels!r}")


def _megapixels(n: int) -> str:
    return f"{n / 1e6:,.1f} MP"


def decode_image(
    data: bytes | bytearray | memoryview,
    *,
    source: str = "",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    flags: int = cv2.IMREAD_COLOR,
) -> np.ndarray:
    """Decode image bytes with OpenCV after checking the header's size against `max_pixels`.

    `flags` as for `cv2.imdecode` (default BGR uint8 (H, W, 3), as mmcv's `imfrombytes`;
    `cv2.IMREAD_UNCHANGED` for label maps). `source` names the data in errors (a path, a URL).
    Raises `ImageTooLargeError` or `BadImageError`; nothing else escapes for any input bytes.
    """
    _check_limit(max_pixels)
    what = source or "image data"
    if not data:
        raise BadImageError(source, f"cannot decode {what}: it is empty (0 bytes); re-extract "
                            "or regenerate it")
    size = header_size(data)
    if size is None:
        raise BadImageError(
            source, f"cannot decode {what}: not an image this tool reads (PNG, JPEG, BMP, TIFF, "
            "WebP or PNM, recognised by its header), or its header is corrupt")
    height, width = size
    if height < 1 or width < 1:
        raise BadImageError(source, f"cannot decode {what}: its header claims an empty size "
                            f"{width}x{height} (WxH); the file is corrupt")
    if height * width > max_pixels:
        raise ImageTooLargeError(
            source, f"{what} is {width}x{height} (WxH, {_megapixels(height * width)}), over the "
            f"limit of {_megapixels(max_pixels)}; downscale it or raise the limit (--max-pixels)",
            height=height, width=width, max_pixels=max_pixels)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "OpenCV error"
        raise BadImageError(source, f"cannot decode {what}: {reason}") from None
    except MemoryError:
        raise BadImageError(source, f"cannot decode {what}: not enough memory for "
                            f"{width}x{height} pixels") from None
    if img is None or img.size == 0:
        raise BadImageError(source, f"cannot decode {what}: the file is corrupt, truncated or "
                            "not an image; re-extract or regenerate it")
    if img.shape[0] * img.shape[1] > max_pixels:  # the header lied: still refuse the result
        raise ImageTooLargeError(
            source, f"{what} decodes to {img.shape[1]}x{img.shape[0]} (WxH), over the limit of "
            f"{_megapixels(max_pixels)}", height=int(img.shape[0]), width=int(img.shape[1]),
            max_pixels=max_pixels)
    return img


def read_file_bytes(path: str | os.PathLike[str], *, max_bytes: int, what: str = "file") -> bytes:
    """A regular file's bytes, at most `max_bytes`; `BadFileError` naming it otherwise.

    Refuses FIFOs and devices (reading `/dev/zero` or a pipe would never end) and files larger
    than `max_bytes` (checked before reading).
    """
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer before we can refuse it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as fh:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise BadFileError(path, f"{what} {path} is not a regular file")
            if info.st_size > max_bytes:
                raise BadFileError(path, f"{what} {path} is {info.st_size:,} bytes, more than "
                                   f"the {max_bytes:,} an accepted file can be")
            data = fh.read(max_bytes + 1)
    except OSError as err:
        raise BadFileError(path, f"cannot read {what} {path}: {err.strerror or err}") from None
    if len(data) > max_bytes:  # it grew while we read it
        raise BadFileError(path, f"{what} {path} is larger than the {max_bytes:,} bytes an "
                           "accepted file can be")
    return data


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    flags: int = cv2.IMREAD_COLOR,
) -> np.ndarray:
    """Read and decode an image file (see `decode_image`); `BadFileError` if it cannot be read."""
    _check_limit(max_pixels)
    data = read_file_bytes(path, max_bytes=max_pixels * _MAX_BYTES_PER_PIXEL + _SLACK_BYTES,
                           what="image")
    return decode_image(data, source=str(path), max_pixels=max_pixels, flags=flags)
