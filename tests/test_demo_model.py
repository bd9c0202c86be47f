"""The shipped demo model is what its card says: file digest, variant, parameter count, and
(recomputed here) its mIoU on the first generated validation scenes."""

from __future__ import annotations

import json

import pytest

from ocrnet.model import describe_checkpoint, model_from_checkpoint
from ocrnet.pipeline import DEMO_CHECKPOINT, DEMO_DATA, DEMO_SCALE

CARD = DEMO_CHECKPOINT.with_name("demo_model.json")
pytestmark = pytest.mark.skipif(not CARD.exists(), reason="no demo model card in this checkout")


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD.read_text())


def test_card_describes_the_file(card):
    info = describe_checkpoint(DEMO_CHECKPOINT)
    assert info["sha256"] == card["sha256"]
    assert info["variant"] == card["variant"] == "hr18"
    assert sum(p.numel() for p in model_from_checkpoint(DEMO_CHECKPOINT).parameters()) \
        == card["parameters"]
    assert DEMO_CHECKPOINT.stat().st_size < 30 * 2**20


def test_recorded_miou_is_reproduced(card, tmp_path):
    from ocrnet.data.synthetic import write_dataset
    from ocrnet.train import validate

    write_dataset(tmp_path, train=0, val=10, size=DEMO_DATA["size"], seed=DEMO_DATA["seed"],
                  progress=False)
    result = validate(model_from_checkpoint(DEMO_CHECKPOINT), str(tmp_path), scale=DEMO_SCALE)
    assert result["mIoU"] == pytest.approx(card["val_first10_mIoU"], abs=0.01)
