"""slide and aug equal genuine mmseg 1.2.2's (golden outputs; refresh with
`/tmp/mmseg_venv/bin/python tests/golden/make_golden_modes.py`)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

from ocrnet.shapes import Size

GOLDEN = Path(__file__).parent / "golden"
FILE = GOLDEN / "modes" / "hr18_modes.npz"
TOL = 1e-4


@functools.cache
def golden() -> dict[str, np.ndarray]:
    with np.load(FILE) as data:
        return {k: data[k] for k in data.files}


@functools.cache
def engine(seed: int):  # a TorchEngine
    from ocrnet.engines.torch import TorchEngine
    from ocrnet.model import build_model

    sys.path.insert(0, str(GOLDEN))
    from randomize import randomized_state_dict

    model = build_model("hr18").eval()
    model.load_state_dict(randomized_state_dict(model.state_dict(), seed))
    return TorchEngine.from_module(model)


@pytest.mark.parametrize("case", ["slide_a", "slide_b", "slide_small", "slide_odd"])
def test_slide_matches_mmseg(case: str):
    from ocrnet.work.modes import slide_logits

    g = golden()
    crop, stride = Size(*g[f"{case}/crop"].tolist()), Size(*g[f"{case}/stride"].tolist())
    ours = slide_logits(engine(int(g[f"{case}/seed"])), g[f"{case}/input"], crop, stride,
                        batch=4)
    picked = ours[g["channels"].tolist()]
    assert np.abs(picked - g[f"{case}/logits"]).max() <= TOL
    assert np.array_equal(ours.argmax(0).astype(np.uint8), g[f"{case}/labels"])


def test_aug_matches_mmseg():
    from ocrnet.work.modes import aug_probs, aug_size

    g = golden()
    image, ratios = g["aug/image"], g["aug/ratios"].tolist()
    h, w = image.shape[:2]
    # the views' sizes are mmseg's Resize(scale_factor=r, keep_ratio=True) ones
    assert [aug_size(h, w, r) for r in ratios for _ in (0, 1)] == \
        [tuple(s) for s in g["aug/shapes"].tolist()]
    probs = aug_probs(engine(int(g["aug/seed"])), image, ratios, flip=True)
    assert np.abs(probs[g["channels"].tolist()] - g["aug/probs"]).max() <= TOL
    assert np.array_equal(probs.argmax(0).astype(np.uint8), g["aug/labels"])
