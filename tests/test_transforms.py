"""Preprocessing equals mmseg's test pipeline bit for bit (imrescale + SegDataPreProcessor)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ocrnet.data.transforms import (
    DEFAULT_SCALE,
    MEAN,
    STD,
    logits_to_labels,
    normalize,
    parse_scale,
    preprocess,
    read_image,
    rescale_size,
    resize,
    resize_labels,
    resize_logits,
)
from ocrnet.errors import DataError


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ((2048, 1024), DEFAULT_SCALE, (2048, 1024)),  # Cityscapes: a no-op
        ((1024, 512), DEFAULT_SCALE, (2048, 1024)),  # upscaled to fit
        ((1000, 600), DEFAULT_SCALE, (1707, 1024)),  # short edge binds: 1024/600
        ((600, 1000), DEFAULT_SCALE, (1024, 1707)),  # portrait: limits apply to long/short edge
        ((2048, 1024), (1024, 512), (1024, 512)),
        ((2048, 1024), (512, 1024), (1024, 512)),  # order of the limits does not matter
        ((2048, 1024), (1000, 1000), (1000, 500)),  # long edge binds
        ((33, 17), 0.5, (17, 9)),  # float factor; int(x * s + 0.5) rounds half up
        ((2048, 1024), (1025, 513), (1025, 513)),  # 2048*0.50048828125 = 1025.0 exactly
    ],
)
def test_rescale_size_matches_mmcv(size: tuple[int, int], scale: object,
                                   expected: tuple[int, int]) -> None:
    assert rescale_size(*size, scale) == expected  # type: ignore[arg-type]


def test_resize_is_cv2_bilinear_and_a_no_op_at_scale() -> None:
    img = np.random.default_rng(0).integers(0, 256, (48, 96, 3), dtype=np.uint8)
    assert resize(img, (96, 48)) is img
    out = resize(img, (64, 64))
    np.testing.assert_array_equal(out, cv2.resize(img, (64, 32), interpolation=cv2.INTER_LINEAR))


def test_normalize_equals_seg_data_preprocessor() -> None:
    """SegDataPreProcessor: CHW uint8 -> channels [2, 1, 0] -> float() -> (x - mean) / std."""
    img = np.random.default_rng(1).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[[2, 1, 0], ...].float()
    mean = torch.tensor(MEAN).view(-1, 1, 1)
    std = torch.tensor(STD).view(-1, 1, 1)
    expected = ((t - mean) / std).numpy()
    out = normalize(img)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


def test_preprocess_shape() -> None:
    img = np.zeros((32, 64, 3), np.uint8)
    assert preprocess(img, (32, 16)).shape == (3, 16, 32)
    assert preprocess(img).shape == (3, 1024, 2048)


def test_read_image_is_bgr(tmp_path: Path) -> None:
    img = np.random.default_rng(2).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), img)


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "truncated"])
def test_read_image_errors_name_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "img_leftImg8bit.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    elif kind == "truncated":
        _, buf = cv2.imencode(".png", np.full((32, 64, 3), 7, np.uint8))
        path.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(DataError, match=r"img_leftImg8bit.png"):
        read_image(path)


@pytest.mark.parametrize(("text", "expected"),
                         [("2048x1024", (2048, 1024)), ("512X256", (512, 256))])
def test_parse_scale(text: str, expected: tuple[int, int]) -> None:
    assert parse_scale(text) == expected


@pytest.mark.parametrize("text", ["2048", "0x10", "axb", "-1x5"])
def test_parse_scale_rejects(text: str) -> None:
    with pytest.raises(DataError, match=r"WIDTHxHEIGHT"):
        parse_scale(text)


def test_logits_path_is_bilinear_then_argmax() -> None:
    logits = np.random.default_rng(3).standard_normal((19, 8, 16)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(logits)[None], size=(16, 32), mode="bilinear",
                             align_corners=False)[0]
    np.testing.assert_array_equal(resize_logits(logits, (16, 32)), expected.numpy())
    labels = logits_to_labels(logits, (16, 32))
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, expected.argmax(0).numpy())
    np.testing.assert_array_equal(logits_to_labels(logits), logits.argmax(0))


def test_labels_path_is_torch_nearest() -> None:
    labels = np.random.default_rng(4).integers(0, 19, (8, 16), dtype=np.uint8)
    for size in [(16, 32), (24, 40), (5, 7)]:
        expected = F.interpolate(torch.from_numpy(labels)[None, None].float(), size=size,
                                 mode="nearest")[0, 0].to(torch.uint8).numpy()
        np.testing.assert_array_equal(resize_labels(labels, size), expected)


def _reference_labels(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The unbounded path logits_to_labels replaced: every channel at full size, then argmax."""
    return resize_logits(logits, size).argmax(axis=-3).astype(np.uint8)


@settings(max_examples=150, deadline=None)
@given(channels=st.integers(1, 7), h=st.integers(1, 12), w=st.integers(1, 12),
       out_h=st.integers(1, 40), out_w=st.integers(1, 40), levels=st.sampled_from([2, 3, 0]),
       seed=st.integers(0, 2**32 - 1))
def test_bounded_logits_to_labels_is_byte_identical(channels: int, h: int, w: int, out_h: int,
                                                    out_w: int, levels: int, seed: int) -> None:
    """Up- and downscales, odd ratios, and ties: `levels` > 0 draws logits from that many
    values, so equal channels (first one wins, as np.argmax) are common."""
    rng = np.random.default_rng(seed)
    if levels:
        logits = rng.integers(0, levels, (channels, h, w)).astype(np.float32)
    else:
        logits = rng.standard_normal((channels, h, w)).astype(np.float32)
    labels = logits_to_labels(logits, (out_h, out_w))
    assert labels.dtype == np.uint8 and labels.shape == (out_h, out_w)
    np.testing.assert_array_equal(labels, _reference_labels(logits, (out_h, out_w)))


def test_bounded_logits_to_labels_special_values_and_large_sizes() -> None:
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((19, 32, 64)).astype(np.float32)
    for size in [(511, 1023), (64, 128), (33, 65), (7, 9)]:
        np.testing.assert_array_equal(logits_to_labels(logits, size),
                                      _reference_labels(logits, size))
    special = rng.standard_normal((5, 6, 8)).astype(np.float32)
    special[1, 2, 3], special[3, 0, 0], special[2, 5, 7] = np.nan, np.inf, -np.inf
    special[4, 1, 1] = np.inf  # inf and -inf meeting in one output make NaN
    special[4, 1, 2] = -np.inf
    for size in [(12, 16), (13, 31), (3, 4)]:
        np.testing.assert_array_equal(logits_to_labels(special, size),
                                      _reference_labels(special, size))
    batch = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(logits_to_labels(batch, (11, 13)),
                                  _reference_labels(batch, (11, 13)))
