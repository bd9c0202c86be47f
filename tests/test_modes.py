"""Test modes (ocrnet.work.modes): the options' one-line errors, the tile grid, slide on a static
package, aug's views, confidence maps. Parity with genuine mmseg: test_modes_golden.py."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from ocrnet.errors import OcrnetError
from ocrnet.shapes import ShapeError, Size
from ocrnet.work.confidence import confidence_at, confidence_png
from ocrnet.work.modes import (
    Mode,
    aug_probs,
    aug_size,
    predict_image,
    slide_logits,
    tile_grid,
)


class _Static:
    """Only what Mode.for_engine reads of an engine: its metadata and name."""

    def __init__(self, shape: list) -> None:
        self.metadata = {"input_shape": shape}
        self.display_name = "pkg"


@pytest.fixture(scope="module")
def engine():
    """An eager TorchEngine on a random-weight hr18 (random BN statistics too)."""
    import sys

    from _engine_helpers import GOLDEN
    from ocrnet.engines.torch import TorchEngine
    from ocrnet.model import build_model

    sys.path.insert(0, str(GOLDEN))
    from randomize import randomized_state_dict

    model = build_model("hr18").eval()
    model.load_state_dict(randomized_state_dict(model.state_dict(), 3))
    return TorchEngine.from_module(model)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    from ocrnet.data.synthetic import generate_scene

    return np.ascontiguousarray(generate_scene(seed, h, w)[0][:, :, ::-1])


# --- options -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "slid"}, "did you mean 'slide'"),
    ({"mode": "slide", "stride": "0x10"}, "--stride '0x10' is not HEIGHTxWIDTH"),
    ({"mode": "slide", "crop": "64x64", "stride": "65x10"}, "larger than --crop 64x64"),
    ({"mode": "whole", "crop": "64x64"}, "apply to --mode slide"),
    ({"mode": "slide", "ratios": [1.0]}, "apply to --mode aug"),
    ({"mode": "aug", "ratios": [0.5, 0.0]}, "positive numbers"),
    ({"mode": "aug", "ratios": []}, "positive numbers"),
])
def test_bad_options_are_one_line(kwargs: dict, message: str):
    with pytest.raises((OcrnetError, ShapeError)) as err:
        Mode.parse(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_static_package_crop_and_aug():
    static = _Static([1, 3, 64, 128])
    assert Mode.parse("slide").for_engine(static).crop == Size(64, 128)
    assert Mode.parse("slide").for_engine(static).stride == Size(42, 85)
    with pytest.raises(OcrnetError, match="--crop 128x128 is larger than the static input"):
        Mode.parse("slide", crop="128x128").for_engine(static)
    with pytest.raises(OcrnetError, match=r"static package .*--dynamic"):
        Mode.parse("aug").for_engine(static)
    dynamic = _Static(["batch", 3, "height", "width"])
    assert Mode.parse("slide").for_engine(dynamic).crop == Size(512, 1024)
    assert Mode.parse("aug", ratios=[1, 2], flip=True).to_dict() == \
        {"mode": "aug", "ratios": [1.0, 2.0], "flip": True}
    with pytest.raises(OcrnetError, match="--scale does not apply"):
        Mode.parse("aug").scale(dynamic, (100, 50))


# --- slide -------------------------------------------------------------------------------------
def test_tile_grid_is_mmsegs():
    # 1024x2048, crop 512x1024, stride 341x682: 3 x 3 tiles, the last ones flush with the border
    tiles = tile_grid(1024, 2048, Size(512, 1024), Size(341, 682))
    assert len(tiles) == 9
    assert tiles[-1] == (512, 1024, 1024, 2048) and tiles[0] == (0, 512, 0, 1024)
    assert tiles[4] == (341, 853, 682, 1706)
    # smaller than the crop: one tile, the whole (smaller) image
    assert tile_grid(40, 72, Size(48, 96), Size(32, 64)) == [(0, 40, 0, 72)]
    covered = np.zeros((97, 161), int)
    for y1, y2, x1, x2 in tile_grid(97, 161, Size(32, 48), Size(20, 28)):
        covered[y1:y2, x1:x2] += 1
    assert covered.min() >= 1


def test_slide_with_one_tile_is_whole(engine):
    from ocrnet.data.transforms import normalize

    x = normalize(_image(48, 80))
    whole = engine.infer(x[None], return_logits=True).logits[0]
    assert np.array_equal(slide_logits(engine, x, Size(64, 96), Size(32, 48)), whole)


def test_slide_batching_does_not_change_the_result(engine):
    from ocrnet.data.transforms import normalize

    x = normalize(_image(56, 90, seed=1))
    one = slide_logits(engine, x, Size(32, 48), Size(24, 30), batch=1)
    many = slide_logits(engine, x, Size(32, 48), Size(24, 30), batch=8)
    assert np.abs(one - many).max() < 1e-4


def test_slide_on_a_static_package_runs_any_size(engine):
    """A static 64x128 package runs a 96x200 image through tiles; equal to eager's tiles."""
    from _engine_helpers import package
    from ocrnet.data.transforms import normalize
    from ocrnet.engines import open_model

    x = normalize(_image(96, 200, seed=2))
    with open_model(package("onnxruntime", "fp32")) as static:
        mode = Mode.parse("slide").for_engine(static)
        ours = slide_logits(static, x, mode.crop, mode.stride)
        ref = slide_logits(eager_at_seed0(), x, mode.crop, mode.stride)
        assert np.abs(ours - ref).max() < 1e-3
        # smaller than the crop: padded to 64x128, the padding cut (differs from mmseg there)
        small = slide_logits(static, x[:, :40, :100], mode.crop, mode.stride)
        assert small.shape[1:] == (40, 100)


@functools.cache
def eager_at_seed0():  # the eager twin of _engine_helpers' packages (checkpoint seed 0)
    from _engine_helpers import checkpoint
    from ocrnet.engines import open_model

    return open_model(checkpoint())


# --- aug ---------------------------------------------------------------------------------------
def test_aug_size_is_mmcvs():
    # mmcv: scale (w, h) by r rounding half up, then imrescale to that (long, short) limit
    assert aug_size(1024, 2048, 0.75) == (768, 1536)
    assert aug_size(97, 161, 0.5) == (49, 81)
    assert aug_size(40, 72, 1.5) == (60, 108)


def test_aug_at_ratio_one_is_whole(engine):
    from ocrnet.data.transforms import normalize

    image = _image(40, 72, seed=4)
    probs = aug_probs(engine, image, [1.0], flip=False)
    whole = engine.infer(normalize(image)[None], return_logits=True)
    assert np.array_equal(probs.argmax(0), whole.labels[0])
    assert np.allclose(probs.sum(0), 1.0, atol=1e-5)


# --- confidence --------------------------------------------------------------------------------
def test_confidence_is_max_softmax_at_the_original_size():
    import torch

    from ocrnet.data.transforms import resize_logits

    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((19, 13, 21)) * 4).astype(np.float32)
    ref = torch.softmax(torch.from_numpy(resize_logits(logits, (40, 61))), 0).amax(0).numpy()
    conf = confidence_at(logits, (40, 61))
    assert conf.shape == (40, 61) and np.abs(conf - ref).max() < 1e-6


def test_confidence_png_scale():
    p = np.array([[0.0, 1 / 255, 0.5, 1.0, 0.998]], np.float32)
    assert confidence_png(p).tolist() == [[0, 1, 128, 255, 254]]


@pytest.mark.parametrize("name", ["whole", "slide", "aug"])
def test_predict_image_every_mode(engine, name: str):
    image = _image(45, 70, seed=5)
    options = {"slide": {"crop": "32x48", "stride": "16x24"}, "aug": {"ratios": [0.5, 1.0],
                                                                       "flip": True}}
    mode = Mode.parse(name, **options.get(name, {})).for_engine(engine)
    # whole and slide resize to --scale first (mmseg's 2048x1024 would upscale this image)
    scale = None if name == "aug" else (70, 45)
    out = predict_image(engine, image, mode, scale=mode.scale(engine, scale), confidence=True)
    assert out.labels.shape == out.confidence.shape == (45, 70)
    assert out.labels.dtype == np.uint8 and out.confidence.min() >= 1 / 19 - 1e-6
    assert out.confidence.max() <= 1 + 1e-6


def test_whole_confidence_on_a_static_batch_runs_padded_slices():
    """Regression: whole + confidence sent N images as they came, which a static package of
    another batch size refuses (predict's last short batch, serve's one image)."""
    from _fakes import OracleEngine
    from ocrnet.work.modes import WHOLE, batch_predictions

    class StaticPair(OracleEngine):
        def __init__(self) -> None:
            super().__init__()
            self._metadata = {"input_shape": [2, 3, 32, 64]}
            self.calls: list[int] = []

        def _infer_impl(self, batch: np.ndarray, want_logits: bool):
            assert len(batch) == 2, "a static package runs exactly its own batch"
            self.calls.append(len(batch))
            return super()._infer_impl(batch, want_logits)

    engine, dynamic = StaticPair(), OracleEngine()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3, 3, 32, 64)).astype(np.float32)
    sizes = [(32, 64), (16, 32), (32, 64)]
    got = batch_predictions(engine, images, sizes, WHOLE, confidence=True)
    want = batch_predictions(dynamic, images, sizes, WHOLE, confidence=True)
    assert engine.calls == [2, 2] and len(got) == 3
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g.labels, w.labels)
        assert np.array_equal(g.confidence, w.confidence)
    (one,) = batch_predictions(engine, images[:1], sizes[:1], WHOLE, confidence=True)
    assert np.array_equal(one.confidence, want[0].confidence)
