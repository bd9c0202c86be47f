"""Hostile packages, ONNX files and checkpoints (issue 12): never read or run what the user did
not name (manifests escaping their folder, links, external data outside the model's folder,
native code without trust), and "not a checkpoint" is not "trust it". Property tests feed random
manifests: only the tool's own errors may escape. Each test names the pattern it pins down."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _hostile import PROPERTY, tiny_package
from ocrnet.errors import CheckpointError, OcrnetError, PackageError


# --- 2. nothing outside what the user named is read or run -----------------------------------
def _tamper(pkg: Path, **fields: object) -> None:
    manifest = pkg / "ocrnet.json"
    meta = json.loads(manifest.read_text())
    meta.update(fields)
    manifest.write_text(json.dumps(meta))


@pytest.mark.parametrize("fields", [
    {"files": {"../../etc/passwd": "0" * 64}},
    {"files": {"/etc/passwd": "0" * 64}},
    {"files": {"a/./b": "0" * 64}},
    {"files": {"model.bin": "not a hash"}},
    {"files": ["model.bin"]},
    {"precision": 16},
    {"precision": "fp8"},
    {"backend": ["openvino"]},
    {"runtime": "bf16"},
    {"input": {"shape": [1, 3]}},
    {"input": {"shape": [1, 3, "h", None]}},
    {"model": {"num_classes": "19"}},
    {"classes": [1, 2]},
    {"palette": [[300, 0, 0]]},
    {"outputs": ["secrets"]},
    {"outputs": ["lowres", "labels"]},  # lowres stands alone: the labels are made from it
    {"format_version": "1"},
    {"source": {"checkpoint": "/dev/zero"}},
    {"source": {"path": 7}},
    {"source": "checkpoint.pth"},
])
def test_wrongly_typed_or_escaping_manifests_are_package_errors(tmp_path: Path,
                                                                fields: dict) -> None:
    from ocrnet.package import read_package

    pkg = tiny_package(tmp_path / "pkg")
    _tamper(pkg, **fields)
    with pytest.raises(PackageError):
        read_package(pkg)


def test_manifest_entries_through_links_or_to_fifos_are_refused(tmp_path: Path) -> None:
    from ocrnet.package import read_package, sha256_file

    pkg = tiny_package(tmp_path / "pkg")
    outside = tmp_path / "secret.txt"
    outside.write_text("private")
    (pkg / "link.bin").symlink_to(outside)
    _tamper(pkg, files={"model.bin": sha256_file(pkg / "model.bin"),
                        "link.bin": sha256_file(outside)})
    with pytest.raises(PackageError, match="symbolic link"):
        read_package(pkg)
    (pkg / "link.bin").unlink()
    os.mkfifo(pkg / "link.bin")
    with pytest.raises(PackageError, match="not a regular file"):
        read_package(pkg)  # a FIFO would hang the hash


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=4)
                     | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20)
_KEYS = st.sampled_from(["backend", "precision", "files", "input", "model", "classes",
                         "palette", "outputs", "runtime", "source", "format_version"])


@PROPERTY
@given(st.dictionaries(_KEYS, _JSON, max_size=6))
def test_manifest_reader_on_random_fields(fields: dict) -> None:
    from ocrnet.package import FORMAT, FORMAT_VERSION, Manifest

    base = {"format": FORMAT, "format_version": FORMAT_VERSION, "backend": "onnxruntime",
            "precision": "fp32", "files": {}}
    try:
        manifest = Manifest.from_json({**base, **fields})
    except PackageError:
        return
    assert all(".." not in name.split("/") for name in manifest.files)


@PROPERTY
@given(st.binary(max_size=256))
def test_manifest_file_of_random_bytes(tmp_path: Path, data: bytes) -> None:
    from ocrnet.package import read_package

    pkg = tmp_path / "pkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "ocrnet.json").write_bytes(data)
    with pytest.raises(PackageError):
        read_package(pkg)


def test_aotinductor_packages_need_trust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._inductor

    from ocrnet.engines import open_model
    from ocrnet.package import PackageWriter

    with PackageWriter(tmp_path / "aoti") as writer:
        (writer.dir / "model.pt2").write_bytes(b"a shared library would be in here")
        writer.commit({"backend": "torch", "precision": "fp32", "runtime": {"device": "cpu"}})
    monkeypatch.setattr(torch._inductor, "aoti_load_package",
                        lambda *a, **k: pytest.fail("loaded native code without trust"))
    with pytest.raises(OcrnetError, match="--trust-package") as info:
        open_model(tmp_path / "aoti")
    assert "shared library" in str(info.value)


def _tiny_onnx(path: Path, *, location: str | None = None) -> Path:
    """A 1x1 convolution `input` -> `logits` (19 classes) at 8x16; weights external if asked."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(
        np.random.default_rng(0).random((19, 3, 1, 1), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 19, 8, 16])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if location is None:
        onnx.save(model, str(path))
        return path
    onnx.save(model, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    if location != "w.bin":  # point the entry elsewhere, as a hostile file would
        proto = onnx.load(str(path), load_external_data=False)
        for entry in proto.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location
        onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname"])
def test_onnx_external_data_outside_its_folder_is_refused(tmp_path: Path, location: str) -> None:
    pytest.importorskip("onnxruntime")
    from ocrnet.build import build_package

    (tmp_path / "in").mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 228)
    src = _tiny_onnx(tmp_path / "in" / "m.onnx", location=location)
    with pytest.raises(OcrnetError, match="outside the ONNX file's folder"):
        build_package(src, tmp_path / "pkg", backend="onnxruntime", precision="fp32")
    assert not (tmp_path / "pkg").exists()


def test_onnx_with_external_data_builds_a_self_contained_package(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from ocrnet.build import build_package
    from ocrnet.engines import open_model

    src = _tiny_onnx(tmp_path / "m.onnx", location="w.bin")
    pkg = build_package(src, tmp_path / "pkg", backend="onnxruntime", precision="fp32")
    (tmp_path / "w.bin").unlink()  # the package must not need the source's files
    with open_model(pkg.path) as engine:
        assert engine.infer(np.zeros((1, 3, 8, 16), np.float32)).labels.shape == (1, 8, 16)


def test_corrupt_onnx_is_one_error(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from ocrnet.build import build_package

    (tmp_path / "bad.onnx").write_bytes(os.urandom(300))
    with pytest.raises(OcrnetError, match="not a readable ONNX model"):
        build_package(tmp_path / "bad.onnx", tmp_path / "pkg", backend="onnxruntime")
    from ocrnet.engines import open_model

    with pytest.raises(OcrnetError, match="not a readable ONNX model"):
        open_model(tmp_path / "bad.onnx")


def test_an_engine_that_cannot_load_its_file_is_one_error(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from ocrnet.engines import open_model
    from ocrnet.package import PackageWriter

    with PackageWriter(tmp_path / "pkg") as writer:
        (writer.dir / "model.onnx").write_bytes(os.urandom(256))  # hashes fine, never loads
        writer.commit({"backend": "onnxruntime", "precision": "fp32"})
    with pytest.raises(OcrnetError, match="ONNX Runtime cannot load"):
        open_model(tmp_path / "pkg")


def test_opening_a_bare_onnx_never_follows_data_out_of_its_folder(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from ocrnet.engines import open_model

    (tmp_path / "in").mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 228)
    with pytest.raises(OcrnetError, match="outside the ONNX file's folder"):
        open_model(_tiny_onnx(tmp_path / "in" / "m.onnx", location="../secret.bin"))


# --- 5. checkpoints: "not a checkpoint" is not "trust it" ------------------------------------
@pytest.mark.parametrize("content", [os.urandom(4096), b"hello\n" * 50, b""])
def test_random_bytes_are_not_a_checkpoint(tmp_path: Path, content: bytes) -> None:
    from ocrnet.model.checkpoint import read_checkpoint

    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as info:
        read_checkpoint(path)
    assert "trust" not in str(info.value)


class _Custom:
    pass


def test_a_real_checkpoint_with_objects_gets_the_trust_advice(tmp_path: Path) -> None:
    import torch

    from ocrnet.model.checkpoint import read_checkpoint

    path = tmp_path / "model.pth"
    torch.save({"meta": _Custom(), "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint") as info:
        read_checkpoint(path)
    assert "_Custom" in str(info.value)
