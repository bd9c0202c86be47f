"""Synthetic Cityscapes-layout scenes: determinism, file layout, label consistency, coverage."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocrnet.cli import main
from ocrnet.data.cityscapes import CLASSES, IGNORE_INDEX, LABEL_TO_TRAIN
from ocrnet.data.synthetic import (
    CITIES,
    SynthResult,
    generate_scene,
    parse_size,
    write_dataset,
)
from ocrnet.errors import DataError


def _read(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    assert image is not None, path
    return image


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    root = tmp_path_factory.mktemp("synth")
    return write_dataset(root, train=4, val=2, size=(64, 128), seed=3, workers=1, progress=False)


def test_layout_and_names(tiny: SynthResult) -> None:
    root = Path(tiny["root"])
    assert tiny["counts"] == {"train": 4, "val": 2}
    for split, n in tiny["counts"].items():
        images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        assert len(images) == n == len(tiny["images"][split])
        for image in images:
            city = image.parent.name
            assert city in CITIES[split]
            stem = image.name.removesuffix("_leftImg8bit.png")
            c, seq, frame = stem.split("_")
            assert (c, len(seq), len(frame)) == (city, 6, 6)
            gt = root / "gtFine" / split / city
            ids = _read(gt / f"{stem}_gtFine_labelIds.png")
            train = _read(gt / f"{stem}_gtFine_labelTrainIds.png")
            rgb = _read(image)
            assert rgb.shape == (64, 128, 3) and rgb.dtype == np.uint8
            assert ids.shape == train.shape == (64, 128) and ids.dtype == train.dtype == np.uint8
    manifest = json.loads((root / "synthetic.json").read_text())
    assert manifest["seed"] == 3 and manifest["size"] == [64, 128]
    assert set(manifest["class_pixels"]["train"]) == {*CLASSES, "ignore"}


def test_result_is_a_typed_record(tiny: SynthResult) -> None:
    # The record reads as the dict write_dataset used to return, and to_json() is that dict.
    assert isinstance(tiny, SynthResult)
    as_json = tiny.to_json()
    assert list(as_json) == ["root", "manifest", "counts", "images", "class_pixels"]
    assert json.loads(json.dumps(as_json)) == as_json == dict(tiny)
    assert tiny.counts == tiny["counts"] and tiny.get("nope") is None
    assert tiny.manifest == str(Path(tiny.root) / "synthetic.json")


def test_no_temporary_files_left(tiny: SynthResult) -> None:
    # Every file is written to a hidden temporary name and renamed; none may stay behind.
    leftovers = list(Path(tiny["root"]).rglob(".*"))
    assert not leftovers


def test_label_ids_and_train_ids_agree(tiny: SynthResult) -> None:
    root = Path(tiny["root"])
    for ids_path in root.glob("gtFine/*/*/*_gtFine_labelIds.png"):
        ids = _read(ids_path)
        train = _read(Path(str(ids_path).replace("_labelIds", "_labelTrainIds")))
        assert (LABEL_TO_TRAIN[ids] >= 0).all(), "only official label ids"
        np.testing.assert_array_equal(LABEL_TO_TRAIN[ids], train)


def test_image_file_is_rgb_of_generated_scene(tiny: SynthResult) -> None:
    # The first val image is scene (seed=3, split val=1, index 0); cv2 reads it back as BGR.
    image, label_ids = generate_scene(np.random.default_rng([3, 1, 0]), 64, 128)
    path = Path(tiny["images"]["val"][0])
    np.testing.assert_array_equal(_read(path)[..., ::-1], image)
    gt = Path(str(path).replace("leftImg8bit", "gtFine", 1)
              .replace("_leftImg8bit", "_gtFine_labelIds"))
    np.testing.assert_array_equal(_read(gt), label_ids)


def test_deterministic_bytes(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", train=2, val=1, size=(64, 128), seed=7, workers=1,
                      progress=False)
    b = write_dataset(tmp_path / "b", train=2, val=1, size=(64, 128), seed=7, workers=2,
                      progress=False)
    c = write_dataset(tmp_path / "c", train=2, val=1, size=(64, 128), seed=8, workers=1,
                      progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 9
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert any((tmp_path / "a" / r).read_bytes() != (tmp_path / "c" / r).read_bytes()
               for r in files)
    assert a["class_pixels"] == b["class_pixels"] != c["class_pixels"]


def test_all_classes_and_ignore_present() -> None:
    seen = np.zeros(256, np.int64)
    for index in range(8):
        _, ids = generate_scene(np.random.default_rng([0, 0, index]), 128, 256)
        seen += np.bincount(LABEL_TO_TRAIN[ids].astype(np.uint8).ravel(), minlength=256)
    missing = [name for i, name in enumerate(CLASSES) if seen[i] == 0]
    assert not missing, f"classes never drawn in 8 scenes: {missing}"
    assert seen[IGNORE_INDEX] > 0


def test_generate_scene_accepts_seed_forms() -> None:
    a = generate_scene(5, 48, 96)
    b = generate_scene(np.random.default_rng(5), 48, 96)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].shape == (48, 96, 3) and a[1].shape == (48, 96)


def test_bad_arguments() -> None:
    assert parse_size("256x512") == (256, 512)
    for text in ("256", "axb", "16x16"):
        with pytest.raises(DataError, match="size"):
            parse_size(text)
    with pytest.raises(DataError, match="train"):
        write_dataset("/nonexistent-never-written", train=-1, val=0, size=(64, 64))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    rc = main(["synth", "--out", str(out), "--train", "1", "--val", "1", "--size", "48x96",
               "--seed", "1", "--workers", "1", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "ocrnet eval MODEL --data-root" in printed
    assert len(list(out.glob("leftImg8bit/val/*/*.png"))) == 1
    # Sizes parse in argparse (ocrnet.shapes); nonsense and the generator's own 32-pixel floor
    # are user errors alike: one line, exit 1.
    assert main(["synth", "--out", str(out), "--size", "big"]) == 1
    assert "size 'big' is not HEIGHTxWIDTH" in capsys.readouterr().err
    assert main(["synth", "--out", str(out), "--size", "16x16"]) == 1
    assert ">= 32" in capsys.readouterr().err
