"""The banded resize-then-argmax: byte-identical to torch's whole-image resize and np.argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ocrnet.data import resize_argmax as ra
from ocrnet.data.transforms import logits_to_labels, resize_logits


def reference(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """mmseg's path: every channel at full size (torch), then np.argmax."""
    return resize_logits(logits, size).argmax(axis=-3).astype(np.uint8)


def smooth(rng: np.random.Generator, channels: int, h: int, w: int, cell: int = 6) -> np.ndarray:
    """Logits that vary slowly, as a network's do: most cells have one clear winner."""
    base = rng.standard_normal((1, channels, h // cell + 2, w // cell + 2)).astype(np.float32)
    out = F.interpolate(torch.from_numpy(base * 4), size=(h, w), mode="bicubic",
                        align_corners=False)
    return out[0].numpy().copy()


def draw(kind: str, rng: np.random.Generator, channels: int, h: int, w: int) -> np.ndarray:
    if kind == "smooth":
        return smooth(rng, channels, h, w)
    if kind == "ties":  # few levels: equal channels everywhere (the first one must win)
        return rng.integers(0, 3, (channels, h, w)).astype(np.float32)
    return rng.standard_normal((channels, h, w)).astype(np.float32)


@pytest.mark.parametrize(("channels", "h", "w", "ry", "rx"), [
    (19, 32, 64, 4, 4), (19, 33, 17, 4, 4), (4, 40, 50, 2, 8), (5, 7, 90, 4, 2),
    (19, 2, 40, 4, 4), (2, 45, 3, 4, 4), (19, 61, 37, 8, 4), (300, 9, 40, 4, 4),
    (19, 10, 72, 4, 4)])  # the bottom border's last piece: one output column
@pytest.mark.parametrize("kind", ["noise", "smooth", "ties"])
def test_banded_labels_are_byte_identical(channels: int, h: int, w: int, ry: int, rx: int,
                                          kind: str) -> None:
    """Odd sides, two source rows, ratios 2, 4 and 8 (each side its own), over 256 classes
    (labels wrap as argmax().astype(np.uint8) does)."""
    rng = np.random.default_rng(channels * 1000 + h * 10 + w)
    logits = draw(kind, rng, channels, h, w)
    size = (h * ry, w * rx)
    assert ra.applies(logits, size)
    want = reference(logits, size)
    np.testing.assert_array_equal(ra.resized_argmax(logits, size, threads=1), want)
    np.testing.assert_array_equal(ra.resized_argmax(logits, size, threads=2), want)
    np.testing.assert_array_equal(logits_to_labels(logits, size), want)


@settings(max_examples=40, deadline=None)
@given(channels=st.integers(2, 20), h=st.integers(1, 40), w=st.integers(1, 70),
       ry=st.sampled_from([2, 4, 8]), rx=st.sampled_from([2, 4, 8]),
       kind=st.sampled_from(["noise", "smooth", "ties"]), seed=st.integers(0, 2**32 - 1))
def test_banded_labels_property(channels: int, h: int, w: int, ry: int, rx: int, kind: str,
                                seed: int) -> None:
    logits = draw(kind, np.random.default_rng(seed), channels, h, w)
    size = (h * ry, w * rx)
    np.testing.assert_array_equal(logits_to_labels(logits, size), reference(logits, size))


def test_most_cells_of_smooth_logits_need_no_interpolation() -> None:
    """The bounds decide most cells of network-like logits, never a wrong one (the labels
    above are byte-identical), and the undecided ones name only their possible winners."""
    logits = smooth(np.random.default_rng(1), 19, 64, 128, cell=12)
    labels, decided, candidates = ra.cell_labels(logits)
    assert decided.mean() > 0.5 and 2 <= len(candidates) <= 19
    full = resize_logits(logits, (256, 512)).argmax(0)
    # cell (i, j): rows 2 + 4i .. 2 + 4i + 3, columns likewise
    inner = full[2:-2, 2:-2].reshape(63, 4, 127, 4).transpose(0, 2, 1, 3)
    assert (inner[decided] == labels[decided][:, None, None]).all()


@pytest.mark.parametrize(("shape", "size"), [
    ((19, 16, 32), (64, 96)),  # 3x: not a power of two
    ((19, 16, 32), (48, 128)),
    ((19, 251, 31), (1001, 124)),  # an input side that is not a multiple of 4
    ((19, 16, 32), (8, 16)),  # downscale
    ((4, 8, 12), (32, 48)),  # output too small for torch's general kernel
    ((19, 1, 40), (4, 160)),  # one source row: torch's kernel choice differs by window
    ((3, 40, 64), (160, 256)),  # 3 classes: torch's kernel depends on its thread count
])
def test_other_ratios_take_the_per_channel_path(shape: tuple[int, int, int],
                                                size: tuple[int, int]) -> None:
    logits = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    assert not ra.applies(logits, size)
    np.testing.assert_array_equal(logits_to_labels(logits, size), reference(logits, size))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 3e38, -3e38])
def test_special_values_keep_numpys_rules(value: float) -> None:
    """NaN, infinities and values whose interpolation could overflow go to the per-channel
    path, which keeps np.argmax's NaN rules (the first NaN wins)."""
    logits = smooth(np.random.default_rng(3), 6, 40, 64)
    logits[2, 10, 20] = value
    logits[4, 10, 21] = -value if np.isfinite(value) else value
    size = (160, 256)
    assert not ra.applies(logits, size)
    np.testing.assert_array_equal(logits_to_labels(logits, size), reference(logits, size))


def test_tiny_and_subnormal_logits() -> None:
    """The margin has an absolute floor: subnormal corners are never decided wrongly."""
    rng = np.random.default_rng(4)
    logits = (smooth(rng, 5, 40, 64) * np.float32(1e-41)).astype(np.float32)
    logits[:, ::3] = 0.0
    size = (160, 256)
    assert ra.applies(logits, size)
    np.testing.assert_array_equal(ra.resized_argmax(logits, size), reference(logits, size))


def test_batches_and_power_of_two_ratios() -> None:
    batch = np.stack([smooth(np.random.default_rng(s), 19, 32, 48) for s in range(2)])
    np.testing.assert_array_equal(logits_to_labels(batch, (128, 192)),
                                  reference(batch, (128, 192)))
    assert [ra.power_of_two_ratio(a, b) for a, b in [(4, 16), (4, 8), (4, 12), (4, 4), (0, 4),
                                                     (5, 40), (3, 2)]] == \
        [4, 2, None, None, None, 8, None]


def test_three_candidate_classes_on_one_thread() -> None:
    """torch resizes exactly 3 channels on one thread with its channels-last kernel (other
    roundings: near-ties flipped 970 pixels here): a band whose undecided cells have 3
    possible winners computes a fourth channel too."""
    rng = np.random.default_rng(0)
    logits = rng.integers(0, 3, (6, 40, 64)).astype(np.float32) * np.float32(0.7)
    logits += rng.standard_normal((6, 40, 64)).astype(np.float32) * np.float32(1e-7)
    logits[3:] -= 100  # classes 3..5 never win: the candidates are 0, 1, 2
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = ra.resized_argmax(logits, (160, 256), threads=1)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(got, reference(logits, (160, 256)))


def test_three_classes_on_one_thread_match_torchs_own_kernel() -> None:
    """3 channels on one thread: torch's whole resize takes its channels-last kernel, which
    a channel at a time would not (191 pixels differed): they are resized together."""
    rng = np.random.default_rng(0)
    logits = rng.integers(0, 3, (3, 40, 64)).astype(np.float32) * np.float32(0.7)
    logits += rng.standard_normal((3, 40, 64)).astype(np.float32) * np.float32(1e-7)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        np.testing.assert_array_equal(logits_to_labels(logits, (160, 256)),
                                      reference(logits, (160, 256)))
    finally:
        torch.set_num_threads(before)
