"""Hostile and broken images (issue 12): bounded memory for any image, sizes read from the header
before decoding, and property tests feeding random bytes to every image and label parser: only
the tool's own errors may escape. Each test names the pattern it pins down."""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _hostile import PROPERTY
from ocrnet.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    decode_image,
    header_size,
    read_image,
)
from ocrnet.errors import BadFileError, BadImageError, DataError, ImageTooLargeError


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims width x height (its data is a few bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))



# --- 4. bounded resources: sizes from the header, before decoding ----------------------------
def test_png_claiming_60000x60000_is_refused_before_any_decoding(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    data = _png_claiming(60000, 60000)
    assert len(data) < 300
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a refused image"))
    with pytest.raises(ImageTooLargeError, match="60000x60000") as info:
        decode_image(data, source="bomb.png")
    assert isinstance(info.value, BadFileError)  # the family --skip-bad skips
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(ImageTooLargeError):
        read_image(tmp_path / "bomb.png")


def test_a_too_large_image_is_skipped_by_skip_bad(tmp_path: Path) -> None:
    from _fakes import make_cityscapes
    from ocrnet.data.loader import Loader

    make_cityscapes(tmp_path, cities={"aachen": 2})
    from ocrnet.data.cityscapes import discover

    samples = discover(tmp_path)
    samples[0].image.write_bytes(_png_claiming(30000, 30000))
    loader = Loader(samples, scale=(64, 32), skip_bad=True)
    assert sum(len(b) for b in loader) == 1
    (skipped,) = loader.skipped
    assert skipped.path == str(samples[0].image) and "limit" in skipped.reason


def test_an_image_of_absurd_proportions_is_a_data_error(tmp_path: Path) -> None:
    from ocrnet.data.cityscapes import Sample
    from ocrnet.data.loader import load_sample

    cv2.imwrite(str(tmp_path / "strip.png"), np.zeros((1, 30000, 3), np.uint8))
    loaded = load_sample(Sample("strip", "x", tmp_path / "strip.png"), labels=False)
    assert loaded.image.shape == (3, 1, 2048)  # not 0 rows, which cv2.resize asserts on


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm", ".pgm"])
def test_header_size_agrees_with_opencv(ext: str) -> None:
    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img[:, :, 0] if ext == ".pgm" else img)
    assert ok
    assert header_size(buf.tobytes()) == (37, 53)
    assert decode_image(buf.tobytes()).shape[:2] == (37, 53)


def test_one_image_suffix_set_and_limits() -> None:
    assert {".png", ".jpg", ".jpeg", ".bmp"} <= IMAGE_SUFFIXES
    from ocrnet import compare
    from ocrnet.work import plan  # where predict finds its images

    assert plan.IMAGE_SUFFIXES is IMAGE_SUFFIXES
    assert compare._IMAGE_SUFFIXES is IMAGE_SUFFIXES
    assert DEFAULT_MAX_PIXELS == 100_000_000
    _, buf = cv2.imencode(".png", np.zeros((20, 20), np.uint8))
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        decode_image(buf.tobytes(), max_pixels=399)
    with pytest.raises(DataError, match="max_pixels"):
        decode_image(buf.tobytes(), max_pixels=0)


def test_formats_without_a_parsed_header_are_refused() -> None:
    ok, buf = cv2.imencode(".hdr", np.zeros((4, 4, 3), np.float32))
    assert ok and header_size(buf.tobytes()) is None
    with pytest.raises(BadImageError, match="not an image this tool reads"):
        decode_image(buf.tobytes())


def test_fifo_and_devices_are_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(BadFileError, match="not a regular file"):
        read_image(fifo)  # would block forever if opened for a plain read
    with pytest.raises(BadFileError, match="not a regular file"):
        read_image("/dev/zero")


@PROPERTY
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_our_errors(data: bytes) -> None:
    size = header_size(data)
    assert size is None or (len(size) == 2 and all(v >= 0 for v in size))
    for flags in (cv2.IMREAD_COLOR, cv2.IMREAD_UNCHANGED):
        with contextlib.suppress(BadFileError):
            decode_image(data, max_pixels=1 << 20, flags=flags)


_SMALL = {ext: cv2.imencode(ext, np.full((9, 7, 3), 80, np.uint8))[1].tobytes()
          for ext in (".png", ".jpg", ".bmp", ".tif", ".webp")}


@PROPERTY
@given(st.sampled_from(sorted(_SMALL)), st.data())
def test_damaged_real_headers_only_raise_our_errors(ext: str, data: st.DataObject) -> None:
    raw = bytearray(_SMALL[ext])
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, min(len(raw) - 1, 63)))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    try:
        img = decode_image(bytes(raw[:cut]), max_pixels=1 << 20)
    except BadFileError:
        return
    assert img.shape[0] * img.shape[1] <= 1 << 20


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_random_png_sizes_are_bounded(width: int, height: int) -> None:
    try:
        img = decode_image(_png_claiming(width, height), max_pixels=4096)
    except BadFileError:
        return
    assert img.shape[0] * img.shape[1] <= 4096


@PROPERTY
@given(st.binary(max_size=512))
def test_label_reader_on_random_bytes(tmp_path: Path, data: bytes) -> None:
    from ocrnet.data.cityscapes import read_label

    path = tmp_path / "x_gtFine_labelIds.png"
    path.write_bytes(data)
    for fmt in ("trainIds", "labelIds"):
        with contextlib.suppress(DataError):
            read_label(path, fmt)
