"""`compare --explain`: label flips, boundary vs interior, and per-layer divergence ranking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import _engine_helpers as h
from ocrnet.explain import FlipTally, boundary_mask

FAULT = "model.backbone.stage3.0.branches.1.0.conv2.weight"


def test_flips_split_into_boundary_and_interior() -> None:
    ref = np.zeros((6, 6), np.uint8)
    ref[:, 3:] = 1  # one vertical edge: columns 2 and 3 are boundary
    got = ref.copy()
    got[0, 3] = 0  # a boundary flip 1 -> 0
    got[5, 0] = 2  # an interior flip 0 -> 2
    tally = FlipTally(19)
    tally.update(ref, got)
    out = tally.to_json([str(i) for i in range(19)])
    assert boundary_mask(ref).sum() == 12
    assert out["flips"] == 2 and out["flip_matrix"][1][0] == 1 and out["flip_matrix"][0][2] == 1
    assert out["flip_rate_boundary"] == pytest.approx(1 / 12)
    assert out["flip_rate_interior"] == pytest.approx(1 / 24)


def test_planted_fault_ranks_first(tmp_path: Path) -> None:
    """One convolution's weights negated: the explain ranking must put it (and its block)
    first, although every layer after it diverges too."""
    import onnx
    from onnx import numpy_helper

    from ocrnet.build import build_package
    from ocrnet.compare import compare_models

    model = onnx.load(str(h.onnx_file()))
    init = next(i for i in model.graph.initializer if i.name == FAULT)
    init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), FAULT))
    faulty = tmp_path / "faulty.onnx"
    onnx.save(model, faulty)
    pkg = build_package(faulty, tmp_path / "pkg", backend="onnxruntime")
    out = tmp_path / "explain"
    report = compare_models([pkg.path], h.calib_root() / "leftImg8bit", reference=h.onnx_file(),
                            explain=True, explain_dir=out, count=2, top_k=5)
    ex = report["models"][0]["explain"]
    worst = ex["layers"]["worst"]
    assert worst[0]["layer"] == FAULT.removeprefix("model.").removesuffix(".weight")
    assert ex["layers"]["blocks"][0]["block"] == "backbone.stage3.0"
    assert worst[0]["added_rel_err"] > 3 * worst[1]["added_rel_err"]
    assert ex["layers"]["layers_compared"] == 316 and len(worst) == 5
    flips = ex["flips"]
    assert np.asarray(flips["flip_matrix"]).shape == (19, 19) and flips["flips"] > 0
    assert Path(ex["heatmap"]).is_file() and (out / "explain.md").is_file()
    assert "| 1 | backbone.stage3.0.branches.1.0.conv2 |" in (out / "explain.md").read_text()
    json.dumps(report)  # the whole report is JSON-serialisable


def test_cli_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI on an unchanged package: no flips, no layer adds error, files written."""
    from ocrnet.cli import main

    pkg = h.package("onnxruntime", "fp32")
    out = tmp_path / "ex"
    assert main(["compare", str(pkg), "--images", str(h.calib_root() / "leftImg8bit" / "val"),
                 "--reference", str(h.onnx_file()), "--explain", "--explain-dir", str(out),
                 "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "flips boundary 0.000% vs interior 0.0000%" in printed
    row = json.loads((tmp_path / "r.json").read_text())["models"][0]
    assert row["explain"]["flips"]["flips"] == 0
    assert max(r["rel_err"] for r in row["explain"]["layers"]["worst"]) == 0.0
    assert (out / "explain.md").is_file()
