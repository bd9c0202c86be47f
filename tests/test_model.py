"""The model is mmseg's: same state_dict keys and shapes, same logits (golden files from genuine
mmseg 1.2.2; refresh with `/tmp/mmseg_venv/bin/python tests/golden/make_golden.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ocrnet.errors import OcrnetError
from ocrnet.model import VARIANTS, build_model

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from randomize import randomized_state_dict  # noqa: E402


def test_hr18_state_dict_keys_and_shapes_equal_mmseg():
    lines = (GOLDEN / "mmseg_hr18_keys.txt").read_text().splitlines()
    expected = [line.rsplit(" (", 1) for line in lines]
    ours = [(k, str(tuple(v.shape))) for k, v in build_model("hr18").state_dict().items()]
    assert [k for k, _ in ours] == [k for k, _ in expected]
    assert [s for _, s in ours] == ["(" + s for _, s in expected]
    assert sum(k.endswith("num_batches_tracked") for k, _ in ours) == 314


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.npz")), ids=lambda p: p.stem)
def test_logits_match_mmseg(golden: Path):
    data = np.load(golden)
    model = build_model(golden.stem.split("_")[0]).eval()
    model.load_state_dict(randomized_state_dict(model.state_dict(), int(data["seed"])))
    with torch.no_grad():
        ours = model(torch.from_numpy(data["input"])).numpy()
    ref = data["logits"]
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) <= 1e-5


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("size", [(32, 64), (33, 47), (1, 1)])
def test_every_variant_returns_logits_at_input_size(variant: str, size: tuple[int, int]):
    model = build_model(variant, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 7, *size)
    assert torch.isfinite(out).all()


def test_forward_heads_gives_ocr_and_aux_logits_at_quarter_resolution():
    model = build_model("hr18s").eval()
    with torch.no_grad():
        ocr, aux = model.forward_heads(torch.randn(1, 3, 64, 96))
    assert ocr.shape == aux.shape == (1, 19, 16, 24)


def test_unknown_variant_lists_valid_names():
    with pytest.raises(OcrnetError, match="hr18s, hr18, hr48"):
        build_model("hr32")
