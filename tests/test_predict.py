"""`predict` / `ocrnet predict` over an oracle engine that reads each pixel's class back out of
its palette colour, so every expected PNG is known exactly; one CLI run uses a real (random)
hr18s checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _fakes import ConstantEngine
from ocrnet.cli import main
from ocrnet.data.cityscapes import CLASSES, PALETTE, TRAIN_TO_LABEL
from ocrnet.data.transforms import MEAN, STD, preprocess, read_image
from ocrnet.engines.base import Engine, InferResult
from ocrnet.errors import DataError, ImageTooLargeError, OcrnetError
from ocrnet.predict import find_images, output_name, predict, predict_run
from ocrnet.visualize import colorize, overlay

_PALETTE = np.array(PALETTE, dtype=np.float32)  # RGB
_MEAN = np.array(MEAN, np.float32)[:, None, None]
_STD = np.array(STD, np.float32)[:, None, None]


class OracleEngine(Engine):
    """Logits = minus the distance of each pixel to each palette colour."""

    backend = "test-oracle"
    calls: list[tuple[int, ...]]

    def __init__(self, logits: bool = True) -> None:
        super().__init__()
        self.logits, self.calls = logits, []

    @classmethod
    def build(cls, request: Any, out_dir: Path) -> Any:  # not built from files in tests
        raise NotImplementedError

    @classmethod
    def open(cls, package: Any, device: str = "cpu", **opts: Any) -> Engine:
        raise NotImplementedError

    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        self.calls.append(batch.shape)
        rgb = batch * _STD + _MEAN
        logits = -((rgb[:, None] - _PALETTE[None, :, :, None, None]) ** 2).sum(axis=2)
        keep = want_logits and self.logits
        return InferResult(logits.argmax(1).astype(np.uint8), logits if keep else None)


def paint(path: Path, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Write an image whose pixels are palette colours of random classes; return the classes."""
    labels = np.random.default_rng(seed).integers(0, len(CLASSES), size=shape).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), _PALETTE.astype(np.uint8)[labels][:, :, ::-1])
    return labels


def read_png(path: str | Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img if img.ndim == 2 else img[:, :, ::-1]


def test_odd_sizes_come_back_exact_at_their_own_size(tmp_path: Path) -> None:
    odd = paint(tmp_path / "in" / "odd.png", (77, 133), seed=1)
    wide = paint(tmp_path / "in" / "wide.png", (64, 128), seed=2)
    engine = OracleEngine()
    results = predict(engine, tmp_path / "in", tmp_path / "out", scale=1.0,
                      color=True, overlay=True, opacity=0.3, progress=False)
    assert [Path(r["image"]).name for r in results] == ["odd.png", "wide.png"]
    assert engine.calls == [(1, 3, 77, 133), (1, 3, 64, 128)]  # scale 1.0: no resize
    for labels, r in zip((odd, wide), results, strict=True):
        assert (r["height"], r["width"]) == labels.shape
        np.testing.assert_array_equal(read_png(r["labels"]), labels)
        np.testing.assert_array_equal(read_png(r["color"]), colorize(labels))
        image_rgb = read_image(r["image"])[:, :, ::-1]
        np.testing.assert_array_equal(read_png(r["overlay"]), overlay(image_rgb, labels, 0.3))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "ocrnet-run.json",  # the run record a rerun resumes from
        "odd_color.png", "odd_labelTrainIds.png", "odd_overlay.png",
        "wide_color.png", "wide_labelTrainIds.png", "wide_overlay.png"]


def test_resized_input_maps_back_as_eval_does(tmp_path: Path) -> None:
    paint(tmp_path / "odd.jpg", (77, 133), seed=3)  # lossy: the reference sees the same pixels
    paint(tmp_path / "wide.png", (64, 128), seed=4)
    engine = OracleEngine()
    results = predict(engine, [tmp_path / "odd.jpg", tmp_path / "wide.png"], tmp_path / "out",
                      scale="64x32", batch_size=2, progress=False)
    assert engine.calls == [(1, 3, 32, 55), (1, 3, 32, 64)]  # mmcv rescale, half up
    for r in results:
        img = read_image(r["image"])
        logits = OracleEngine().infer(preprocess(img, (64, 32))[None], return_logits=True).logits
        up = F.interpolate(torch.from_numpy(logits), size=img.shape[:2], mode="bilinear",
                           align_corners=False)
        expected = up.argmax(1)[0].numpy().astype(np.uint8)
        got = read_png(r["labels"])
        assert got.shape == img.shape[:2]
        np.testing.assert_array_equal(got, expected)


def test_labels_only_engine_needs_resize_labels(tmp_path: Path) -> None:
    paint(tmp_path / "a.png", (64, 128))
    with pytest.raises(OcrnetError, match="--resize labels"):
        predict(OracleEngine(logits=False), tmp_path / "a.png", tmp_path / "out",
                scale=(64, 32), progress=False)
    (r,) = predict(OracleEngine(logits=False), tmp_path / "a.png", tmp_path / "out",
                   scale=(64, 32), resize="labels", progress=False)
    assert read_png(r["labels"]).shape == (64, 128)


def test_cityscapes_format_names_and_label_ids(tmp_path: Path) -> None:
    root = tmp_path / "leftImg8bit" / "test"
    labels = paint(root / "berlin" / "berlin_000123_000019_leftImg8bit.png", (32, 64))
    results = predict(OracleEngine(), root, tmp_path / "out", format="cityscapes",
                      scale=(64, 32), progress=False)
    out = tmp_path / "out" / "berlin" / "berlin_000123_000019_pred_labelIds.png"
    assert results[0]["labels"] == str(out)
    pred = read_png(out)
    np.testing.assert_array_equal(pred, TRAIN_TO_LABEL[labels])
    assert pred[labels == 0].tolist() == [7] * int((labels == 0).sum())  # road is labelId 7
    assert output_name("street.jpeg") == "street" and output_name("_leftImg8bit.png") == (
        "_leftImg8bit")


def test_inputs_files_folders_globs(tmp_path: Path) -> None:
    for rel in ("a/1.png", "a/sub/2.JPG", "a/3.jpeg", "b/4.png", "b/5.jpg"):
        paint(tmp_path / rel, (4, 4))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    paint(tmp_path / "a" / "x_gtFine_labelTrainIds.png", (4, 4))  # a label map: passed over
    paint(tmp_path / "a" / "1_color.png", (4, 4))  # an earlier output: passed over
    found = find_images([tmp_path / "a", str(tmp_path / "b" / "*.jpg"), tmp_path / "a" / "1.png",
                         tmp_path / "a" / "1_color.png"])
    names = [(p.relative_to(tmp_path).as_posix(), sub.as_posix()) for p, sub in found]
    assert names == [("a/1.png", "."), ("a/3.jpeg", "."), ("a/sub/2.JPG", "sub"),
                     ("b/5.jpg", "."), ("a/1_color.png", ".")]
    recursive = find_images([f"{tmp_path}/**/*.png"])
    assert sorted(p.name for p, _ in recursive) == ["1.png", "4.png"]
    with pytest.raises(DataError, match=r"no file, folder or glob match.*missing"):
        find_images([tmp_path / "a", tmp_path / "missing*.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        find_images([tmp_path / "empty"])


def test_two_images_writing_one_file_is_an_error(tmp_path: Path) -> None:
    paint(tmp_path / "a" / "x.png", (4, 4))
    paint(tmp_path / "b" / "x.jpg", (4, 4))
    with pytest.raises(DataError, match="would both write"):
        predict(OracleEngine(), [tmp_path / "a" / "x.png", tmp_path / "b" / "x.jpg"],
                tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # checked before anything is written


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"format": "cityscape"}, "did you mean 'cityscapes'"),
    ({"opacity": -0.1}, "opacity"),
    ({"batch_size": 0}, "batch size"),
    ({"resize": "nearest"}, "resize"),
])
def test_bad_options(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    paint(tmp_path / "a.png", (4, 4))
    with pytest.raises(OcrnetError, match=match):
        predict(OracleEngine(), tmp_path / "a.png", tmp_path / "out", progress=False, **kwargs)


# --- resume: the run record ------------------------------------------------------------------
def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_skips_only_this_runs_outputs_and_refuses_another_model(tmp_path: Path) -> None:
    paint(tmp_path / "in" / "a.png", (16, 32), seed=1)
    paint(tmp_path / "in" / "b.png", (16, 32), seed=2)
    out = tmp_path / "out"
    first = predict_run(OracleEngine(), tmp_path / "in", out, scale=1.0, color=True,
                        progress=False)
    assert (first.resumed, len(first.images)) == (0, 2)
    engine = OracleEngine()
    again = predict_run(engine, tmp_path / "in", out, scale=1.0, color=True, progress=False)
    assert (again.resumed, again.images, engine.calls) == (2, [], [])  # nothing recomputed
    (out / "a_color.png").unlink()  # one output lost: that image alone runs again
    again = predict_run(engine, tmp_path / "in", out, scale=1.0, color=True, progress=False)
    assert again.resumed == 1 and [Path(r["image"]).name for r in again.images] == ["a.png"]
    before = _files(out)
    with pytest.raises(OcrnetError, match=r"model test-oracle \(sha256 \w+\) there, "
                                          r"test-constant \(sha256 \w+\) now.*--overwrite"):
        predict(ConstantEngine(3), tmp_path / "in", out, scale=1.0, color=True, progress=False)
    with pytest.raises(OcrnetError, match="resize 'logits' there, 'labels' now"):
        predict(OracleEngine(), tmp_path / "in", out, scale=1.0, color=True, resize="labels",
                progress=False)
    assert _files(out) == before  # a refusal writes nothing


def test_overwrite_replaces_only_the_runs_own_outputs(tmp_path: Path) -> None:
    paint(tmp_path / "in" / "a.png", (16, 32), seed=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_labelTrainIds.png").write_bytes(b"someone else's file")
    (out / "notes.txt").write_text("mine")
    (out / "c_labelTrainIds.png").write_bytes(b"not this run's")
    with pytest.raises(OcrnetError, match=r"no matching run record .* owns: a_labelTrainIds"):
        predict(OracleEngine(), tmp_path / "in", out, scale=1.0, progress=False)
    predict(ConstantEngine(3), tmp_path / "in", out, scale=1.0, progress=False,
            overwrite=True)
    assert (read_png(out / "a_labelTrainIds.png") == 3).all()  # model B's answer now
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "c_labelTrainIds.png").read_bytes() == b"not this run's"
    again = predict_run(ConstantEngine(3), tmp_path / "in", out, scale=1.0, progress=False)
    assert again.resumed == 1  # the record now names model B


def test_overlay_reads_the_original_under_the_runs_pixel_limit(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    paint(image, (16, 32))  # 512 pixels

    class Growing(OracleEngine):  # the file grows between its decode and the overlay's
        def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
            cv2.imwrite(str(image), np.zeros((40, 40, 3), np.uint8))  # 1600 pixels
            return super()._infer_impl(batch, want_logits)

    with pytest.raises(ImageTooLargeError, match=r"40x40 .*over the limit"):
        predict(Growing(), image, tmp_path / "out", scale=1.0, overlay=True, max_pixels=1000,
                progress=False)


def test_a_model_of_other_classes_gets_no_cityscapes_ids(tmp_path: Path) -> None:
    class FiveClasses(OracleEngine):
        @property
        def metadata(self) -> dict[str, Any]:
            return {"backend": self.backend, "model": {"num_classes": 5}}

    paint(tmp_path / "a.png", (8, 16))
    with pytest.raises(OcrnetError, match=r"predicts 5 classes.*use --format trainids"):
        predict(FiveClasses(), tmp_path / "a.png", tmp_path / "out", format="cityscapes",
                scale=1.0, progress=False)
    assert not list((tmp_path / "out").glob("*.png"))
    run = predict_run(FiveClasses(), tmp_path / "a.png", tmp_path / "out", scale=1.0,
                      progress=False)
    assert run.num_classes == 5  # the CLI then prints no `next: ocrnet eval` hint


# --- the CLI -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ocrnet.model import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "hr18s_random.pth"
    torch.save(build_model("hr18s").state_dict(), path)
    return path


def test_cli_predicts_with_a_checkpoint(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paint(tmp_path / "in" / "aachen_000000_000019_leftImg8bit.png", (64, 128))
    paint(tmp_path / "in" / "odd.jpg", (77, 133))
    rc = main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
               "--format", "cityscapes", "--scale", "128x64", "--color", "--no-progress",
               "--json", str(tmp_path / "out.json")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "predicted 2 image(s)" in captured.out and "next: ocrnet eval" in captured.out
    pred = read_png(tmp_path / "out" / "aachen_000000_000019_pred_labelIds.png")
    assert pred.shape == (64, 128) and set(np.unique(pred)) <= set(TRAIN_TO_LABEL[:19].tolist())
    assert read_png(tmp_path / "out" / "odd_pred_labelIds.png").shape == (77, 133)
    assert read_png(tmp_path / "out" / "odd_color.png").shape == (77, 133, 3)
    assert len(json.loads((tmp_path / "out.json").read_text())) == 2


def test_cli_unreadable_image_names_the_file(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paint(tmp_path / "in" / "good.png", (64, 128))
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rc = main(["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
               "--scale", "128x64", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "broken.png" in err and "Traceback" not in err
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temps


@pytest.mark.parametrize("case", ["no-match", "empty-folder", "out-is-a-file"])
def test_cli_user_errors_exit_1(tmp_path: Path, case: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    paint(tmp_path / "img.png", (4, 4))
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("")
    inputs, out = {
        "no-match": ([str(tmp_path / "nothing*.png")], tmp_path / "out"),
        "empty-folder": ([str(tmp_path / "empty")], tmp_path / "out"),
        "out-is-a-file": ([str(tmp_path / "img.png")], tmp_path / "file"),
    }[case]
    # The model is never opened: inputs and output folder are checked first.
    rc = main(["predict", str(tmp_path / "no-model.pth"), *inputs, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("ocrnet predict: error:") and "Traceback" not in err
    assert {"no-match": "no file, folder or glob match", "empty-folder": "no images",
            "out-is-a-file": "cannot create output folder"}[case] in err


@pytest.fixture
def static_package() -> Path:
    """The serve tests' static 4x3x64x128 package: built once per session (in the setup of the
    first test that asks, so --durations shows the build apart from the test)."""
    from _engine_helpers import demo_package

    return demo_package("openvino", "fp32", (4, 3, 64, 128))


def test_cli_runs_any_number_of_images_on_a_static_batch_package(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], static_package: Path) -> None:
    """A static batch-4 package takes 1 and 3 images (padded with the last image, its labels
    dropped), byte for byte what the same images give in a full batch (tests/test_work.py checks
    the same padding over a static fake engine in milliseconds)."""
    package = static_package
    names = ["a", "b", "c"]
    for seed, name in enumerate(names):
        paint(tmp_path / "in" / f"{name}.png", (64, 128), seed=seed)
    (tmp_path / "in" / "d.png").write_bytes((tmp_path / "in" / "c.png").read_bytes())

    def run(out: str, *images: str, batch: str = "1") -> dict[str, bytes]:
        rc = main(["predict", str(package), *(str(tmp_path / "in" / f"{i}.png") for i in images),
                   "--out", str(tmp_path / out), "--batch-size", batch, "--no-progress",
                   "--threads", "1"])
        assert rc == 0, capsys.readouterr().err
        return {p.name: p.read_bytes() for p in (tmp_path / out).glob("*.png")}

    full = run("full", *names, "d", batch="4")  # one full batch: (a, b, c, d = c)
    assert run("one", "a") == {"a_labelTrainIds.png": full["a_labelTrainIds.png"]}
    assert run("three", *names) == {f"{n}_labelTrainIds.png": full[f"{n}_labelTrainIds.png"]
                                    for n in names}
