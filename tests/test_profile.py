"""The layer map, the per-block profile and its outputs, on the shared tiny packages."""

from __future__ import annotations

import json

import pytest

import _engine_helpers as h
from ocrnet.bench.profile import ProfileReport, profile, write_profile
from ocrnet.bench.roofline import Ceilings, compute_types, probe_compute
from ocrnet.errors import OcrnetError
from ocrnet.layer_map import BLOCKS, LAYER_MAP, block_of, layer_map, read_layer_map

#: Fixed ceilings, so the tests skip the probes (they cost seconds each).
CEILINGS = Ceilings(gflops={"fp32": 100.0}, bandwidth_gbs=10.0, kernels={"fp32": "test"})
MODEL_BLOCKS = {"stem", "stage1", "stage2", "stage3", "stage4", "fusion/upsampling", "fcn-aux",
                "ocr-context", "ocr-attention", "classifier", "resize+argmax"}


@pytest.mark.parametrize(("scopes", "op", "block"), [
    (["model", "model.backbone", "model.backbone.bn1"], "Conv", "stem"),
    (["model", "model.backbone", "model.backbone.layer1.2"], "Conv", "stage1"),
    (["model", "model.backbone", "model.backbone.transition1.1"], "Conv", "stage2"),
    (["model", "model.backbone", "model.backbone.stage3.1.branches.0"], "Conv", "stage3"),
    (["model", "model.backbone", "model.backbone.stage4.0.fuse_layers.0.1"], "Resize",
     "fusion/upsampling"),
    (["model"], "Concat", "fusion/upsampling"),
    (["model", "model.decode_head.0", "model.decode_head.0.conv_seg"], "Conv", "fcn-aux"),
    (["model", "model.decode_head.1", "model.decode_head.1.bottleneck"], "Conv", "ocr-context"),
    (["model", "model.decode_head.1", "model.decode_head.1.object_context_block"], "MatMul",
     "ocr-attention"),
    (["model", "model.decode_head.1", "model.decode_head.1.conv_seg"], "Conv", "classifier"),
    ([], "ArgMax", "resize+argmax"),
])
def test_block_of(scopes: list[str], op: str, block: str) -> None:
    assert block_of(scopes, op) == block


def test_layer_map_covers_the_model_and_its_flops() -> None:
    from ocrnet.flops import count_flops

    nodes = layer_map(h.onnx_file())["nodes"]
    assert {n["block"] for n in nodes.values()} == MODEL_BLOCKS
    # The ONNX conv/matmul count equals torch's FLOP counter on the same model and shape.
    total = sum(n["flops"] for n in nodes.values())
    assert total == pytest.approx(count_flops("hr18", *h.SHAPE[2:]).flops, rel=0.01)
    final = [n for n in nodes.values() if n["block"] == "resize+argmax"]
    assert {n["op"] for n in final} == {"Resize", "ArgMax", "Cast"}


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_profile_groups_every_node(backend: str) -> None:
    pkg = h.package(backend, "fp32")
    assert read_layer_map(pkg), f"build wrote no {LAYER_MAP}"
    report = profile([pkg], shape=h.SHAPE[2:], iterations=2, ceilings=CEILINGS)
    (m,) = report.models
    blocks = {b["block"]: b for b in m.blocks}
    assert MODEL_BLOCKS - {"resize+argmax"} <= set(blocks)  # ORT may fuse the argmax away
    assert list(blocks) == [b for b in BLOCKS if b in blocks]  # in the model's order
    assert sum(b["ms"] for b in m.blocks) == pytest.approx(m.layers_ms, rel=1e-3, abs=0.01)
    assert m.unmapped <= 0.05 * len(m.layers), [x["name"] for x in m.layers if not x["mapped"]]
    nodes = {n["out"]: n for n in read_layer_map(pkg).values()}  # the aliases counted once
    assert sum(b["gflop"] for b in m.blocks) > 0.9 * sum(n["flops"] for n in nodes.values()) / 1e9
    assert all(0 < b["of_ceiling"] < 10 for b in m.blocks if b["of_ceiling"] is not None)


def test_write_profile_outputs(tmp_path: object) -> None:
    out = tmp_path / "prof"  # type: ignore[operator]
    report = write_profile([h.package("openvino", "fp32")], out, shape=h.SHAPE[2:],
                           iterations=1, ceilings=CEILINGS)
    assert isinstance(report, ProfileReport)
    data = json.loads((out / "profile.json").read_text())
    assert data["ceilings"]["gflops"] == {"fp32": 100.0}
    assert data["machine"]["cpu_flags"] is not None
    assert "| block |" in (out / "profile.md").read_text()
    text = (out / "profile.txt").read_text()
    assert "ceilings (this run)" in text and "stage4" in text
    assert (out / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_refuses_a_checkpoint(tmp_path: object) -> None:
    with pytest.raises(OcrnetError, match="needs engine packages"):
        write_profile([h.checkpoint()], tmp_path, shape=h.SHAPE[2:])


def test_probes_and_compute_types() -> None:
    rate, kernel = probe_compute("fp32", channels=32, size=32, repeats=2)
    assert rate > 0 and kernel
    assert compute_types("int8-bf16") == ["int8", "bf16"]
    assert compute_types("fp32") == ["fp32"]
    assert CEILINGS.of("bf16") == 100.0  # a precision not probed falls back to fp32's


def test_cli_profile_refuses_a_checkpoint(tmp_path: object, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    from ocrnet.cli import main

    assert main(["bench", str(h.checkpoint()), "--profile", str(tmp_path)]) == 1
    assert "needs engine packages" in capsys.readouterr().err


@pytest.mark.slow  # the real probes: a few seconds of convolutions and a bandwidth sweep
def test_cli_profile_writes_the_report(tmp_path: object) -> None:
    from ocrnet.cli import main

    out = tmp_path / "p"  # type: ignore[operator]
    assert main(["bench", str(h.package("openvino", "fp32")), "--profile", str(out),
                 "--shape", "64x128", "--iterations", "1"]) == 0
    data = json.loads((out / "profile.json").read_text())
    assert data["ceilings"]["gflops"]["fp32"] > 0 and data["ceilings"]["bandwidth_gbs"] > 0
    assert data["models"][0]["blocks"]
