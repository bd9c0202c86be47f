"""`ocrnet compare`: fidelity against the PyTorch fp32 reference, table and JSON."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

import _engine_helpers as h
from ocrnet.cli import main
from ocrnet.compare import compare_models, format_table
from ocrnet.errors import DataError, OcrnetError


@h.needs("openvino", "bf16")
def test_compare_packages(tmp_path: Path) -> None:
    images = h.calib_root() / "leftImg8bit"
    fp32, bf16 = h.package("onnxruntime", "fp32"), h.package("openvino", "bf16")
    report = compare_models([fp32, bf16], images, reference=h.checkpoint(), count=2,
                            json_out=tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert report["images"] == 2
    exact, low = report["models"]
    assert exact["pixel_agreement"] >= 0.9999 and exact["logits_rel_l2"] <= 1e-5
    assert exact["mIoU_vs_reference"] >= 0.999
    assert low["precision"] == "bf16" and 0.95 <= low["pixel_agreement"] < 1.0
    table = format_table(report)
    assert "onnxruntime" in table and "bf16" in table


def test_reference_is_asked_for_never_read_from_the_manifest(
        capsys: pytest.CaptureFixture[str]) -> None:
    # The manifest names the checkpoint the package came from; compare used to hash whatever
    # file it names (a 4 GB one hung it). Now it only suggests it, in the command to paste.
    images = str(h.calib_root() / "leftImg8bit" / "val")
    package = str(h.package("onnxruntime", "fp32"))
    assert main(["compare", package, "--images", images]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--reference {h.checkpoint()}" in err[0]
    pasted = shlex.split(err[0][err[0].index("ocrnet compare "):])
    assert pasted[:2] == ["ocrnet", "compare"] and main(pasted[1:]) == 0
    out = capsys.readouterr().out
    assert str(h.checkpoint()) in out and "100.000" in out


def test_no_images(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images"):
        compare_models([h.checkpoint()], tmp_path)
    with pytest.raises(OcrnetError, match="no image folder"):
        compare_models([h.checkpoint()], tmp_path / "missing")
