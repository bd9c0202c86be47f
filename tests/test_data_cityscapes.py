"""Cityscapes discovery and label files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from _fakes import make_cityscapes
from ocrnet.data.cityscapes import (
    CLASSES,
    LABEL_TO_TRAIN,
    TRAIN_TO_LABEL,
    discover,
    read_label,
    train_ids_to_label_ids,
)
from ocrnet.errors import DataError


# --- the class table -------------------------------------------------------------------------
def test_label_table_matches_cityscapesscripts() -> None:
    from cityscapesscripts.helpers.labels import labels

    for lab in labels:
        if lab.id < 0:
            continue
        expected = 255 if lab.trainId in (255, -1) else lab.trainId
        assert LABEL_TO_TRAIN[lab.id] == expected, lab.name
        if expected != 255:
            assert CLASSES[expected] == lab.name
            assert TRAIN_TO_LABEL[expected] == lab.id


def test_train_ids_round_trip_through_label_ids() -> None:
    train = np.array([[0, 5, 18, 255]], dtype=np.uint8)
    assert LABEL_TO_TRAIN[train_ids_to_label_ids(train)].tolist() == train.tolist()


# --- discovery -------------------------------------------------------------------------------
@pytest.mark.parametrize("label_format", ["trainIds", "labelIds", "both"])
def test_discover_pairs_and_sorts(tmp_path: Path, label_format: str) -> None:
    labels = make_cityscapes(tmp_path, cities={"bochum": 1, "aachen": 2},
                             label_format=label_format)
    samples = discover(tmp_path, "val")
    assert [s.stem for s in samples] == sorted(labels)
    assert [s.city for s in samples] == ["aachen", "aachen", "bochum"]
    expected_format = "labelIds" if label_format == "labelIds" else "trainIds"
    for s in samples:
        assert s.image.name == f"{s.stem}_leftImg8bit.png"
        assert s.label_format == expected_format
        assert s.label is not None and s.label.name.startswith(s.stem)
        np.testing.assert_array_equal(read_label(s.label, s.label_format), labels[s.stem])


def test_missing_root_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere"):
        discover(tmp_path / "nowhere")


def test_empty_split_lists_the_splits_found(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, "train")
    with pytest.raises(DataError, match=r"leftImg8bit/val.*splits found: train"):
        discover(tmp_path, "val")


def test_image_without_label(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, cities={"aachen": 2})
    lonely = tmp_path / "gtFine/val/aachen/aachen_000001_000020_gtFine_labelTrainIds.png"
    lonely.unlink()
    with pytest.raises(DataError, match=r"no label.*aachen_000001_000020_leftImg8bit.png"):
        discover(tmp_path)
    # Prediction-only use does not need labels.
    samples = discover(tmp_path, labels_required=False)
    assert [s.label is None for s in samples] == [False, True]


def test_label_without_image(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, cities={"aachen": 2})
    (tmp_path / "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png").unlink()
    with pytest.raises(DataError, match=r"aachen_000000_000019_gtFine_labelTrainIds.png"):
        discover(tmp_path)


# --- label files -----------------------------------------------------------------------------
def test_unknown_label_ids_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "x_gtFine_labelIds.png"
    cv2.imwrite(str(path), np.array([[7, 200]], dtype=np.uint8))
    with pytest.raises(DataError, match=r"x_gtFine_labelIds.png.*\[200\]"):
        read_label(path, "labelIds")


def test_label_ids_map_void_to_ignore(tmp_path: Path) -> None:
    path = tmp_path / "x_gtFine_labelIds.png"
    cv2.imwrite(str(path), np.array([[0, 7, 26, 255]], dtype=np.uint8))
    assert read_label(path, "labelIds").tolist() == [[255, 0, 13, 255]]


def test_train_ids_out_of_range_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "x_gtFine_labelTrainIds.png"
    cv2.imwrite(str(path), np.array([[3, 33]], dtype=np.uint8))
    with pytest.raises(DataError, match=r"x_gtFine_labelTrainIds.png.*\[33\]"):
        read_label(path, "trainIds")


@pytest.mark.parametrize("content", [b"", b"not a png at all", "truncated", "colour"])
def test_bad_label_files_name_the_file(tmp_path: Path, content: object) -> None:
    path = tmp_path / "bad_gtFine_labelTrainIds.png"
    if content == "truncated":
        _, buf = cv2.imencode(".png", np.zeros((32, 64), np.uint8))
        path.write_bytes(buf.tobytes()[:-30])
    elif content == "colour":
        cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    else:
        path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"bad_gtFine_labelTrainIds.png"):
        read_label(path)
