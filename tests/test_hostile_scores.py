"""Never a silently wrong score (issue 12): ambiguous or unpaired Cityscapes layouts, a model
with other classes, all-ignore labels, trainIds saved as labelIds; and the API-side argument
checks and the step cache. Each test names the pattern it pins down."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocrnet.errors import ArgumentError, DataError, OcrnetError


# --- 3. never a silently wrong score ---------------------------------------------------------
def test_one_frame_name_in_two_cities_is_refused(tmp_path: Path) -> None:
    from _fakes import make_cityscapes
    from ocrnet.data.cityscapes import discover

    make_cityscapes(tmp_path, cities={"aachen": 1, "bochum": 1})
    for kind, suffix in (("leftImg8bit", "_leftImg8bit.png"),
                         ("gtFine", "_gtFine_labelTrainIds.png")):
        src = tmp_path / kind / "val" / "aachen" / f"aachen_000000_000019{suffix}"
        shutil.copy(src, tmp_path / kind / "val" / "bochum" / src.name)
    with pytest.raises(DataError, match="more than one city folder"):
        discover(tmp_path)


def test_labels_are_never_paired_across_cities(tmp_path: Path) -> None:
    from _fakes import make_cityscapes
    from ocrnet.data.cityscapes import discover

    make_cityscapes(tmp_path, cities={"aachen": 1, "bochum": 1})
    label = tmp_path / "gtFine" / "val" / "aachen" / "aachen_000000_000019_gtFine_labelTrainIds.png"
    os.rename(label, tmp_path / "gtFine" / "val" / "bochum" / label.name)
    with pytest.raises(DataError, match="have no label"):
        discover(tmp_path)


def test_an_unreadable_city_folder_is_an_error(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from _fakes import make_cityscapes
    from ocrnet.data.cityscapes import discover

    make_cityscapes(tmp_path, cities={"aachen": 1, "bochum": 1})
    locked = str(tmp_path / "leftImg8bit" / "val" / "bochum")
    real = os.scandir

    def scandir(path: str) -> object:  # chmod 000 does not stop root, so refuse it here
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match="bochum"):
        discover(tmp_path)


class _Engine:
    """A minimal engine: `labels` from the palette-painted image (the oracle of test_evaluate)."""

    @staticmethod
    def make(num_classes: int | None = None) -> object:
        from _fakes import OracleEngine

        engine = OracleEngine()
        if num_classes is not None:
            engine._metadata = {"backend": "test", "model": {"num_classes": num_classes}}
        return engine


def test_a_model_with_other_classes_is_refused(tmp_path: Path) -> None:
    from _fakes import make_cityscapes
    from ocrnet.evaluate import evaluate

    make_cityscapes(tmp_path, cities={"aachen": 1})
    with pytest.raises(OcrnetError, match="21 classes"):
        evaluate(_Engine.make(21), tmp_path, scale=(64, 32), progress=False)


def test_all_ignore_labels_warn_in_output_and_json(tmp_path: Path) -> None:
    from _fakes import make_cityscapes
    from ocrnet.data.cityscapes import discover
    from ocrnet.evaluate import evaluate

    make_cityscapes(tmp_path, cities={"aachen": 2})
    empty = discover(tmp_path)[0].label
    cv2.imwrite(str(empty), np.full((32, 64), 255, np.uint8))
    result = evaluate(_Engine.make(), tmp_path, scale=(64, 32), progress=False)
    assert any("only ignored pixels" in w for w in result.to_json()["warnings"])
    assert "warning:" in result.table()


def test_trainids_saved_as_labelids_warn(tmp_path: Path) -> None:
    from _fakes import make_cityscapes
    from ocrnet.data.cityscapes import discover
    from ocrnet.evaluate import evaluate_predictions

    labels = make_cityscapes(tmp_path / "data", cities={"aachen": 2})
    preds = tmp_path / "preds"
    preds.mkdir()
    for sample in discover(tmp_path / "data"):
        train = labels[sample.stem].copy()
        train[train == 255] = 0
        cv2.imwrite(str(preds / f"{sample.stem}_pred_labelIds.png"), train)  # wrong id space
    result = evaluate_predictions(preds, tmp_path / "data", progress=False)
    assert any("look like trainIds" in w for w in result.warnings)


# --- 5. API-side argument checks and the step cache ------------------------------------------
@pytest.mark.parametrize("field", ["iters", "batch_size", "workers"])
def test_train_refuses_zero_before_any_work(tmp_path: Path, field: str) -> None:
    from ocrnet.train import TrainConfig, train

    cfg = TrainConfig(data_root=str(tmp_path / "data"), out_dir=str(tmp_path / "out"),
                      **{field: 0})
    with pytest.raises(ArgumentError, match=field):
        train(cfg, progress=False)
    assert not (tmp_path / "out").exists()


def test_loader_and_eval_refuse_bad_worker_counts(tmp_path: Path) -> None:
    from ocrnet.data.loader import Loader
    from ocrnet.evaluate import evaluate_predictions

    with pytest.raises(ArgumentError, match="workers"):
        Loader([], workers=-1)
    with pytest.raises(ArgumentError, match="batch_size"):
        Loader([], batch_size=0)
    with pytest.raises(ArgumentError, match="workers"):
        evaluate_predictions(tmp_path, tmp_path, workers=0, progress=False)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[]", b'{"key": 1}', b""])
def test_a_corrupt_step_cache_entry_is_a_miss(tmp_path: Path, content: bytes) -> None:
    from ocrnet.pipeline import StepCache

    cache = StepCache(tmp_path, say=lambda _msg: None)
    (tmp_path / "steps" / "export.json").write_bytes(content)
    assert cache.run("export", "k1", lambda: {"done": 1}) == {"done": 1}
    assert cache.run("export", "k1", lambda: pytest.fail("not cached")) == {"done": 1}
