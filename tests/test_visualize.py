"""Colour masks, overlays, panels, bar charts and the atomic PNG writer."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ocrnet.data.cityscapes import CLASSES, PALETTE
from ocrnet.visualize import bar_chart, colorize, legend, overlay, side_by_side, write_png


def test_colorize_is_the_palette_and_ignore_is_black() -> None:
    labels = np.array([[*range(len(CLASSES)), 255, 19, 200]], dtype=np.uint8)
    rgb = colorize(labels)
    assert rgb.shape == (1, len(CLASSES) + 3, 3) and rgb.dtype == np.uint8
    for i, color in enumerate(PALETTE):
        assert tuple(rgb[0, i]) == color
    assert not rgb[0, len(CLASSES):].any()  # 255 and ids without a colour
    np.testing.assert_array_equal(colorize(labels.astype(np.int64)), rgb)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        colorize(np.array([[256]]))


def test_overlay_blends_half_up_and_keeps_ignored_pixels() -> None:
    image = np.array([[[100, 10, 0], [100, 10, 0], [7, 8, 9]]], dtype=np.uint8)
    labels = np.array([[0, 13, 255]], dtype=np.uint8)  # road (128,64,128), car (0,0,142)
    out = overlay(image, labels, opacity=0.25)
    # 0.75 * image + 0.25 * colour, rounded half up: 91.5 -> 92, 35.5 -> 36
    assert out[0, 0].tolist() == [107, 24, 32]
    assert out[0, 1].tolist() == [75, 8, 36]
    assert out[0, 2].tolist() == [7, 8, 9]  # ignored: the image as it is
    np.testing.assert_array_equal(overlay(image, labels, 0.0), image)
    assert overlay(image, labels, 1.0)[0, :2].tolist() == [[128, 64, 128], [0, 0, 142]]
    with pytest.raises(ValueError, match="opacity"):
        overlay(image, labels, 1.5)
    with pytest.raises(ValueError, match="share"):
        overlay(image, labels[:, :2], 0.5)


def test_side_by_side_and_legend() -> None:
    image = np.full((20, 30, 3), 9, dtype=np.uint8)
    pred = np.zeros((20, 30), dtype=np.uint8)
    gt = np.full((20, 30), 255, dtype=np.uint8)
    row = side_by_side(image, pred, gt, gap=4)
    assert row.shape == (20, 98, 3)
    assert (row[:, :30] == 9).all() and tuple(row[0, 34]) == PALETTE[0] and not row[:, 68:].any()
    assert (row[:, 30:34] == 255).all()  # white gaps
    titled = side_by_side(image, pred, gt, titles=["image", "prediction", "truth"],
                          with_legend=True)
    strip = legend(98)
    assert titled.shape == (22 + 20 + strip.shape[0], 98, 3)
    assert strip.dtype == np.uint8 and strip.shape[1] == 98
    with pytest.raises(ValueError, match="height"):
        side_by_side(image, pred[:10])


def test_bar_chart_writes_a_png(tmp_path: Path) -> None:
    rows = [{"precision": "fp32", "mIoU": 80.5, "throughput_ips": 2.0},
            {"precision": "int8", "mIoU": None, "throughput_ips": float("nan")}]
    out = bar_chart(rows, ["mIoU", "throughput_ips"], tmp_path / "plots" / "bars.png",
                    titles={"throughput_ips": "images/s"}, title="hr18s")
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] > img.shape[0]  # two panels side by side
    assert [p.name for p in out.parent.iterdir()] == ["bars.png"]  # no temp file left


def test_write_png_rgb_round_trip(tmp_path: Path) -> None:
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    path = write_png(tmp_path / "red.png", rgb)
    np.testing.assert_array_equal(cv2.imread(str(path))[:, :, ::-1], rgb)
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_png(tmp_path / "labels.png", labels)
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "labels.png"), cv2.IMREAD_UNCHANGED), labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.png", "red.png"]


def test_bar_chart_rows_without_the_label_key_are_refused(tmp_path: Path) -> None:
    """Regression: the run report's chart labelled its bars 0, 1, 2 when the key was missing."""
    with pytest.raises(KeyError, match="precision"):
        bar_chart([{"label": "fp32", "mIoU": 70.0}], ["mIoU"], tmp_path / "bars.png")
