"""Checkpoints: the official mmseg layout and its variations load strictly; bad files explain."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch

from ocrnet.cli import main
from ocrnet.errors import CheckpointError
from ocrnet.model import (
    build_model,
    describe_checkpoint,
    detect_variant,
    load_checkpoint,
    model_from_checkpoint,
)


class NotAllowlisted:  # a class a safe loader must refuse to construct
    def __init__(self) -> None:
        self.value = 1


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    model = build_model("hr18s")
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _official_like(model, **meta_extra):
    meta = {
        "config": "model = dict(type='CascadeEncoderDecoder', num_stages=2)",
        "CLASSES": ("road", "sidewalk"),
        "PALETTE": [[128, 64, 128], [244, 35, 232]],
        "mmseg_version": "0.5.0",
        "iter": 160000,
        **meta_extra,
    }
    return {"meta": meta, "state_dict": model.state_dict(),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.01}]}}


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("zipfile_format", [True, False], ids=["zip", "legacy"])
def test_official_layout_loads_in_both_torch_save_formats(tmp_path, source, zipfile_format):
    path = tmp_path / "ckpt.pth"
    torch.save(_official_like(source), path, _use_new_zipfile_serialization=zipfile_format)
    model = build_model("hr18s")
    meta = load_checkpoint(model, path)
    assert _same_weights(model, source)
    assert meta["iter"] == 160000


def test_bare_and_module_prefixed_state_dicts(tmp_path, source):
    bare, prefixed = tmp_path / "bare.pth", tmp_path / "dp.pth"
    torch.save(source.state_dict(), bare)
    torch.save(collections.OrderedDict(
        ("module." + k, v) for k, v in source.state_dict().items()), prefixed)
    for path in (bare, prefixed):
        model = build_model("hr18s")
        load_checkpoint(model, path)
        assert _same_weights(model, source)


def test_numpy_objects_in_meta_load_without_trusting(tmp_path, source):
    path = tmp_path / "np.pth"
    torch.save(_official_like(source, seed=np.int64(3), stats=np.arange(3.0)), path)
    model = build_model("hr18s")
    meta = load_checkpoint(model, path)
    assert int(meta["seed"]) == 3


def test_arbitrary_objects_are_refused_unless_trusted(tmp_path, source):
    path = tmp_path / "obj.pth"
    torch.save(_official_like(source, hook=NotAllowlisted()), path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_checkpoint(build_model("hr18s"), path)
    model = build_model("hr18s")
    load_checkpoint(model, path, trust_checkpoint=True)
    assert _same_weights(model, source)


def test_mismatch_lists_missing_unexpected_and_misshaped_keys(tmp_path, source):
    state = dict(source.state_dict())
    del state["backbone.conv1.weight"]
    state["backbone.extra.weight"] = torch.zeros(1)
    state["decode_head.1.conv_seg.weight"] = torch.zeros(7, 512, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_model("hr18s"), path)
    text = str(err.value)
    assert "1 missing: backbone.conv1.weight" in text
    assert "1 unexpected: backbone.extra.weight" in text
    assert "decode_head.1.conv_seg.weight: (7, 512, 1, 1) in file, (19, 512, 1, 1)" in text


def test_wrong_variant_is_a_clear_error(tmp_path, source):
    path = tmp_path / "s.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_checkpoint(build_model("hr18"), path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncate"])
def test_unreadable_files(tmp_path, source, content):
    path = tmp_path / "broken.pth"
    if content == "truncate":
        torch.save({"state_dict": source.state_dict()}, path)
        path.write_bytes(path.read_bytes()[: 100_000])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"broken\.pth"):
        load_checkpoint(build_model("hr18s"), path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(build_model("hr18s"), tmp_path / "nope.pth")


def test_variant_detection_and_model_from_checkpoint(tmp_path, source):
    assert detect_variant(source.state_dict()) == "hr18s"
    assert detect_variant(build_model("hr18").state_dict()) == "hr18"
    assert detect_variant(build_model("hr48", num_classes=5).state_dict()) == "hr48"
    path = tmp_path / "c.pth"
    torch.save(_official_like(source), path)
    model = model_from_checkpoint(path)
    assert not model.training and _same_weights(model, source)


def test_a_missing_key_names_the_file_the_key_and_the_closest_variant(tmp_path, source, capsys):
    state = dict(source.state_dict())
    missing = "backbone.stage3.0.branches.1.0.conv1.weight"
    del state[missing]
    state["decode_head.0.extra.weight"] = torch.zeros(1)
    path = tmp_path / "one-key-short.pth"
    torch.save({"state_dict": state}, path)
    for call in (model_from_checkpoint, describe_checkpoint):
        with pytest.raises(CheckpointError) as err:
            call(path)
        text = str(err.value)
        assert str(path) in text and "closest is hr18s" in text
        assert f"1 missing: {missing}" in text and "1 unexpected: decode_head.0.extra" in text
    assert main(["inspect", str(path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and missing in lines[0] and "Traceback" not in lines[0]
    with pytest.raises(CheckpointError, match=r"^checkpoint does not match .* closest is hr18,"):
        detect_variant({k: v for k, v in build_model("hr18").state_dict().items()
                        if "stage4" not in k})


def test_inspect_prints_variant_params_classes_and_config(tmp_path, source, capsys):
    path = tmp_path / "c.pth"
    torch.save(_official_like(source), path)
    info = describe_checkpoint(path)
    expected_params = sum(p.numel() for p in source.parameters())
    assert info["variant"] == "hr18s" and info["parameters"] == expected_params
    out_json = tmp_path / "info.json"
    assert main(["inspect", str(path), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "hr18s" in printed and "CascadeEncoderDecoder" in printed and "road, sidewalk" in printed
    assert json.loads(out_json.read_text())["num_classes"] == 19


def test_inspect_user_error_has_no_traceback(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.pth")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
