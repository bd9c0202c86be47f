"""The parallel loader: order, batching by shape, bounded prefetch, bad files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from _fakes import make_cityscapes
from ocrnet.data.cityscapes import discover
from ocrnet.data.loader import Loader, bounded_map
from ocrnet.data.transforms import preprocess, read_image
from ocrnet.errors import DataError


def test_batches_keep_order_and_match_preprocess(tmp_path: Path) -> None:
    labels = make_cityscapes(tmp_path, cities={"aachen": 3, "bochum": 2})
    samples = discover(tmp_path)
    batches = list(Loader(samples, batch_size=2, scale=(64, 32), workers=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    seen = [s for b in batches for s in b.samples]
    assert seen == samples
    images, batch_labels, batch_samples = batches[0]  # unpacks as a 3-tuple
    assert images.shape == (2, 3, 32, 64) and images.dtype == np.float32
    np.testing.assert_array_equal(images[1], preprocess(read_image(batch_samples[1].image),
                                                        (64, 32)))
    np.testing.assert_array_equal(batch_labels[0], labels[batch_samples[0].stem])
    assert batches[0].sizes == [(32, 64), (32, 64)]


def test_batches_never_mix_shapes(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, cities={"aachen": 2}, size=(32, 64))
    make_cityscapes(tmp_path, cities={"bochum": 2}, size=(32, 32), seed=1)
    make_cityscapes(tmp_path, cities={"cologne": 1}, size=(32, 64), seed=2)
    batches = list(Loader(discover(tmp_path), batch_size=4, scale=(64, 32)))
    assert [(len(b), b.images.shape[-2:]) for b in batches] == [
        (2, (32, 64)), (2, (32, 32)), (1, (32, 64))]


def test_smaller_scale_keeps_labels_at_original_size(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, cities={"aachen": 1})
    (batch,) = Loader(discover(tmp_path), scale=(32, 16))
    assert batch.images.shape == (1, 3, 16, 32)
    assert batch.labels[0].shape == (32, 64) and batch.sizes == [(32, 64)]


def test_without_labels(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, cities={"aachen": 2})
    (batch,) = Loader(discover(tmp_path), batch_size=2, scale=(64, 32), labels=False)
    assert batch.labels == [None, None] and batch.sizes == [(32, 64)] * 2


def test_prefetch_is_bounded() -> None:
    lock = threading.Lock()
    started = 0

    def work(i: int) -> int:
        nonlocal started
        with lock:
            started += 1
        return i

    consumed = 0
    for future in bounded_map(work, range(50), workers=3, prefetch=4):
        assert future.result() == consumed
        consumed += 1
        time.sleep(0.001)  # a slow consumer: workers must not run ahead
        with lock:
            assert started - consumed <= 4
    assert consumed == 50


def test_early_stop_does_not_hang(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, cities={"aachen": 6})
    for batch in Loader(discover(tmp_path), scale=(64, 32), prefetch=2):
        assert len(batch) == 1
        break


def _break(tmp_path: Path, kind: str) -> Path:
    """Damage the first sample's image or label; return the file that is now bad."""
    image = tmp_path / "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png"
    label = tmp_path / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelTrainIds.png"
    if kind == "corrupt image":
        image.write_bytes(b"this is not a png")
        return image
    if kind == "truncated image":
        image.write_bytes(image.read_bytes()[:100])
        return image
    if kind == "truncated label":
        label.write_bytes(label.read_bytes()[:-20])
        return label
    if kind == "size mismatch":
        cv2.imwrite(str(label), np.zeros((16, 64), np.uint8))
        return label
    if kind == "unknown ids":
        cv2.imwrite(str(label), np.full((32, 64), 77, np.uint8))
        return label
    raise AssertionError(kind)


BAD = ["corrupt image", "truncated image", "truncated label", "size mismatch", "unknown ids"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_files_raise_naming_the_file(tmp_path: Path, kind: str) -> None:
    make_cityscapes(tmp_path, cities={"aachen": 3})
    bad = _break(tmp_path, kind)
    with pytest.raises(DataError, match=bad.name):
        list(Loader(discover(tmp_path), scale=(64, 32)))


@pytest.mark.parametrize("kind", BAD)
def test_skip_bad_records_and_continues(tmp_path: Path, kind: str) -> None:
    make_cityscapes(tmp_path, cities={"aachen": 3})
    bad = _break(tmp_path, kind)
    loader = Loader(discover(tmp_path), batch_size=2, scale=(64, 32), skip_bad=True)
    batches = list(loader)
    assert sum(len(b) for b in batches) == 2
    assert [s.path for s in loader.skipped] == [str(bad)]
    assert bad.name in loader.skipped[0].reason
