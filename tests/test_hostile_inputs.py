"""Hostile and broken inputs (issue 12): each test names the pattern it pins down.

Never lose a user's file, never read or run what the user did not name, never score silently
wrong, bounded memory for any image, one error family for every failure. Property tests feed
random bytes to every parser: only the tool's own errors may escape. All tiny; < 60 s in total.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocrnet.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    decode_image,
    header_size,
    read_image,
)
from ocrnet.errors import (
    ArgumentError,
    BadFileError,
    BadImageError,
    CheckpointError,
    DataError,
    ImageTooLargeError,
    OcrnetError,
    OutputError,
    PackageError,
)
from ocrnet.fileio import atomic_path, atomic_write_bytes, atomic_write_text, clean_stale_temps

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims width x height (its data is a few bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- 4. bounded resources: sizes from the header, before decoding ----------------------------
def test_png_claiming_60000x60000_is_refused_before_any_decoding(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    data = _png_claiming(60000, 60000)
    assert len(data) < 300
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a refused image"))
    with pytest.raises(ImageTooLargeError, match="60000x60000") as info:
        decode_image(data, source="bomb.png")
    assert isinstance(info.value, BadFileError)  # the family --skip-bad skips
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(ImageTooLargeError):
        read_image(tmp_path / "bomb.png")


def test_a_too_large_image_is_skipped_by_skip_bad(tmp_path: Path) -> None:
    from ocrnet.data.loader import Loader
    from test_data_cityscapes import make_cityscapes

    make_cityscapes(tmp_path, cities={"aachen": 2})
    from ocrnet.data.cityscapes import discover

    samples = discover(tmp_path)
    samples[0].image.write_bytes(_png_claiming(30000, 30000))
    loader = Loader(samples, scale=(64, 32), skip_bad=True)
    assert sum(len(b) for b in loader) == 1
    (skipped,) = loader.skipped
    assert skipped.path == str(samples[0].image) and "limit" in skipped.reason


def test_an_image_of_absurd_proportions_is_a_data_error(tmp_path: Path) -> None:
    from ocrnet.data.cityscapes import Sample
    from ocrnet.data.loader import load_sample

    cv2.imwrite(str(tmp_path / "strip.png"), np.zeros((1, 30000, 3), np.uint8))
    loaded = load_sample(Sample("strip", "x", tmp_path / "strip.png"), labels=False)
    assert loaded.image.shape == (3, 1, 2048)  # not 0 rows, which cv2.resize asserts on


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm", ".pgm"])
def test_header_size_agrees_with_opencv(ext: str) -> None:
    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img[:, :, 0] if ext == ".pgm" else img)
    assert ok
    assert header_size(buf.tobytes()) == (37, 53)
    assert decode_image(buf.tobytes()).shape[:2] == (37, 53)


def test_one_image_suffix_set_and_limits() -> None:
    assert {".png", ".jpg", ".jpeg", ".bmp"} <= IMAGE_SUFFIXES
    from ocrnet import compare
    from ocrnet.work import plan  # where predict finds its images

    assert plan.IMAGE_SUFFIXES is IMAGE_SUFFIXES
    assert compare._IMAGE_SUFFIXES is IMAGE_SUFFIXES
    assert DEFAULT_MAX_PIXELS == 100_000_000
    _, buf = cv2.imencode(".png", np.zeros((20, 20), np.uint8))
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        decode_image(buf.tobytes(), max_pixels=399)
    with pytest.raises(DataError, match="max_pixels"):
        decode_image(buf.tobytes(), max_pixels=0)


def test_formats_without_a_parsed_header_are_refused() -> None:
    ok, buf = cv2.imencode(".hdr", np.zeros((4, 4, 3), np.float32))
    assert ok and header_size(buf.tobytes()) is None
    with pytest.raises(BadImageError, match="not an image this tool reads"):
        decode_image(buf.tobytes())


def test_fifo_and_devices_are_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(BadFileError, match="not a regular file"):
        read_image(fifo)  # would block forever if opened for a plain read
    with pytest.raises(BadFileError, match="not a regular file"):
        read_image("/dev/zero")


@PROPERTY
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_our_errors(data: bytes) -> None:
    size = header_size(data)
    assert size is None or (len(size) == 2 and all(v >= 0 for v in size))
    for flags in (cv2.IMREAD_COLOR, cv2.IMREAD_UNCHANGED):
        with contextlib.suppress(BadFileError):
            decode_image(data, max_pixels=1 << 20, flags=flags)


_SMALL = {ext: cv2.imencode(ext, np.full((9, 7, 3), 80, np.uint8))[1].tobytes()
          for ext in (".png", ".jpg", ".bmp", ".tif", ".webp")}


@PROPERTY
@given(st.sampled_from(sorted(_SMALL)), st.data())
def test_damaged_real_headers_only_raise_our_errors(ext: str, data: st.DataObject) -> None:
    raw = bytearray(_SMALL[ext])
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, min(len(raw) - 1, 63)))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    try:
        img = decode_image(bytes(raw[:cut]), max_pixels=1 << 20)
    except BadFileError:
        return
    assert img.shape[0] * img.shape[1] <= 1 << 20


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_random_png_sizes_are_bounded(width: int, height: int) -> None:
    try:
        img = decode_image(_png_claiming(width, height), max_pixels=4096)
    except BadFileError:
        return
    assert img.shape[0] * img.shape[1] <= 4096


@PROPERTY
@given(st.binary(max_size=512))
def test_label_reader_on_random_bytes(tmp_path: Path, data: bytes) -> None:
    from ocrnet.data.cityscapes import read_label

    path = tmp_path / "x_gtFine_labelIds.png"
    path.write_bytes(data)
    for fmt in ("trainIds", "labelIds"):
        with contextlib.suppress(DataError):
            read_label(path, fmt)


# --- 1. nothing of the user's destroyed: atomic output ---------------------------------------
def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "result.json", '{"ok": 1}')
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"half')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == '{"ok": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_output_under_a_regular_file_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="file"):
        atomic_write_bytes(tmp_path / "file" / "out.json", b"{}")


def test_temps_of_killed_writers_are_cleaned(tmp_path: Path) -> None:
    from ocrnet.fileio import HOST_TAG

    pid = _dead_pid()
    other_host = "0000" if HOST_TAG != "0000" else "ffff"
    dead = tmp_path / f".out.json.tmp-{pid}-{HOST_TAG}abcd"
    live = tmp_path / f".out.json.tmp-{os.getpid()}-{HOST_TAG}abcd"
    remote = tmp_path / f".out.json.tmp-{pid}-{other_host}abcd"  # a pid of another machine
    mine = tmp_path / ".out.json.tmp-notes"  # not our pattern: never touched
    for p in (dead, live, remote, mine):
        p.write_text("x")
    assert clean_stale_temps(tmp_path) == [dead]
    assert live.exists() and remote.exists() and mine.exists() and not dead.exists()


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False)
    return proc.returncode == 0


def test_full_disk_keeps_existing_json_and_png_intact(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("mounting a small tmpfs needs root and mount permission (a container "
                    "without CAP_SYS_ADMIN); the atomic-write logic is covered above")
    try:
        from ocrnet.visualize import write_png

        report = atomic_write_text(disk / "report.json", '{"mIoU": 80.0}\n')
        png = write_png(disk / "pred.png", np.zeros((8, 8), np.uint8))
        before = png.read_bytes()
        with pytest.raises(OutputError, match="no space left"):
            atomic_write_text(report, json.dumps({"x": "y" * 200_000}))
        noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
        with pytest.raises(OutputError, match="no space left"):
            write_png(png, noise)
        assert report.read_text() == '{"mIoU": 80.0}\n'
        assert png.read_bytes() == before
        assert sorted(p.name for p in disk.iterdir()) == ["pred.png", "report.json"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_build_into_a_full_disk_names_the_package(tmp_path: Path) -> None:
    import _engine_helpers

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("mounting a small tmpfs needs root and mount permission")
    try:
        from ocrnet.build import build_package

        for backend in ("onnxruntime", "openvino"):  # an OSError naming the source; a
            out = disk / f"pkg-{backend}"             # RuntimeError naming nothing
            with pytest.raises(OutputError, match=f"{out}: no space left.*{disk}") as err:
                build_package(_engine_helpers.onnx_file(), out, backend=backend)
            assert "\n" not in str(err.value)
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --- 1. packages: --overwrite deletes only what is provably ours ------------------------------
def _package(out: Path, content: bytes = b"weights", **kw: object) -> Path:
    from ocrnet.package import PackageWriter

    with PackageWriter(out, **kw) as writer:  # type: ignore[arg-type]
        (writer.dir / "model.bin").write_bytes(content)
        writer.commit({"backend": "onnxruntime", "precision": "fp32"})
    return out


def test_overwrite_never_deletes_a_folder_with_an_unrelated_manifest(tmp_path: Path) -> None:
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "ocrnet.json").write_text('{"my": "settings"}')
    (thesis / "thesis.tex").write_text("years of work")
    with pytest.raises(PackageError, match="not replacing it"):
        _package(thesis, overwrite=True)
    assert (thesis / "thesis.tex").read_text() == "years of work"


def test_overwrite_refuses_a_package_holding_unlisted_files(tmp_path: Path) -> None:
    pkg = _package(tmp_path / "pkg")
    (pkg / "notes.txt").write_text("mine")
    with pytest.raises(PackageError, match=r"notes\.txt"):
        _package(pkg, overwrite=True)
    (pkg / "notes.txt").unlink()
    _package(pkg, overwrite=True)  # exactly a package: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_a_folder_appearing_during_a_build_is_not_replaced(tmp_path: Path) -> None:
    from ocrnet.package import PackageWriter

    out = tmp_path / "pkg"
    with PackageWriter(out) as writer:
        (writer.dir / "model.bin").write_bytes(b"w")
        out.mkdir()  # someone else's (empty) folder: plain rename() would replace it
        (out.parent / "marker").write_text("x")
        with pytest.raises(PackageError, match="appeared while this build ran"):
            writer.commit({"backend": "onnxruntime", "precision": "fp32"})
    assert out.is_dir() and not any(out.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_package_replaced_during_an_overwrite_build_is_left_alone(tmp_path: Path) -> None:
    from ocrnet.package import PackageWriter

    out = _package(tmp_path / "pkg")
    with PackageWriter(out, overwrite=True) as writer:
        (writer.dir / "model.bin").write_bytes(b"new")
        shutil.rmtree(out)
        _package(tmp_path / "other", b"other weights")
        os.rename(tmp_path / "other", out)  # another build won meanwhile (maybe same inode)
        with pytest.raises(PackageError, match="replaced by another program"):
            writer.commit({"backend": "onnxruntime", "precision": "fp32"})


def test_two_builds_into_one_out_one_fails_clearly(tmp_path: Path) -> None:
    from ocrnet.package import PackageWriter

    first = PackageWriter(tmp_path / "pkg")
    try:
        with pytest.raises(PackageError, match="another build"):
            PackageWriter(tmp_path / "pkg")
    finally:
        first.__exit__(None)


def test_leftovers_of_a_killed_build_are_cleaned_by_the_next(tmp_path: Path) -> None:
    from ocrnet.fileio import HOST_TAG

    stale = tmp_path / f".pkg.partial-{_dead_pid()}-{HOST_TAG}c0de"
    stale.mkdir()
    (stale / "model.bin").write_bytes(b"half")
    _package(tmp_path / "pkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


_KILLED_MID_SWAP = """
import os, signal, sys
from ocrnet.package import PackageWriter, writer

def die(src, dst):  # the old package is aside, the new one not yet renamed in
    os.kill(os.getpid(), signal.SIGKILL)

writer._rename_noreplace = die
with PackageWriter(sys.argv[1], overwrite=True) as w:
    (w.dir / "model.bin").write_bytes(b"new weights")
    w.commit({"backend": "onnxruntime", "precision": "fp32"})
"""


def test_a_build_killed_mid_swap_is_undone_by_the_next(tmp_path: Path) -> None:
    from ocrnet.package import read_package

    out = _package(tmp_path / "pkg", b"old weights")
    child = subprocess.run([sys.executable, "-c", _KILLED_MID_SWAP, str(out)],
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                           capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == -9, child.stderr
    assert not out.exists()  # the crash window: nothing at --out ...
    aside = [p for p in tmp_path.iterdir() if ".old-" in p.name]
    assert len(aside) == 1  # ... but the old package set aside next to it
    with pytest.raises(PackageError, match=r"killed while replacing it.*puts it back"):
        read_package(out)
    with pytest.raises(PackageError, match="already exists"):  # restored, then not replaced
        _package(out, b"other")
    assert (out / "model.bin").read_bytes() == b"old weights"
    read_package(out)
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]
    _package(out, b"newer", overwrite=True)
    assert (out / "model.bin").read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_output_folder_is_checked_before_the_work(tmp_path: Path) -> None:
    from ocrnet.package import PackageWriter

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="file"):
        PackageWriter(tmp_path / "file" / "pkg")


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

    pkg = _package(tmp_path / "pkg")
    _tamper(pkg, **fields)
    with pytest.raises(PackageError):
        read_package(pkg)


def test_manifest_entries_through_links_or_to_fifos_are_refused(tmp_path: Path) -> None:
    from ocrnet.package import read_package, sha256_file

    pkg = _package(tmp_path / "pkg")
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


# --- 3. never a silently wrong score ---------------------------------------------------------
def test_one_frame_name_in_two_cities_is_refused(tmp_path: Path) -> None:
    from ocrnet.data.cityscapes import discover
    from test_data_cityscapes import make_cityscapes

    make_cityscapes(tmp_path, cities={"aachen": 1, "bochum": 1})
    for kind, suffix in (("leftImg8bit", "_leftImg8bit.png"),
                         ("gtFine", "_gtFine_labelTrainIds.png")):
        src = tmp_path / kind / "val" / "aachen" / f"aachen_000000_000019{suffix}"
        shutil.copy(src, tmp_path / kind / "val" / "bochum" / src.name)
    with pytest.raises(DataError, match="more than one city folder"):
        discover(tmp_path)


def test_labels_are_never_paired_across_cities(tmp_path: Path) -> None:
    from ocrnet.data.cityscapes import discover
    from test_data_cityscapes import make_cityscapes

    make_cityscapes(tmp_path, cities={"aachen": 1, "bochum": 1})
    label = tmp_path / "gtFine" / "val" / "aachen" / "aachen_000000_000019_gtFine_labelTrainIds.png"
    os.rename(label, tmp_path / "gtFine" / "val" / "bochum" / label.name)
    with pytest.raises(DataError, match="have no label"):
        discover(tmp_path)


def test_an_unreadable_city_folder_is_an_error(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from ocrnet.data.cityscapes import discover
    from test_data_cityscapes import make_cityscapes

    make_cityscapes(tmp_path, cities={"aachen": 1, "bochum": 1})
    locked = str(tmp_path / "leftImg8bit" / "val" / "bochum")
    real = os.scandir

    def scandir(path: str) -> object:  # chmod 000 does not stop root, so refuse it here
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match="bochum"):
        discover(tmp_path)


class _Engine:
    """A minimal engine: `labels` from the palette-painted image (the oracle of test_evaluate)."""

    @staticmethod
    def make(num_classes: int | None = None) -> object:
        from test_evaluate import OracleEngine

        engine = OracleEngine()
        if num_classes is not None:
            engine._metadata = {"backend": "test", "model": {"num_classes": num_classes}}
        return engine


def test_a_model_with_other_classes_is_refused(tmp_path: Path) -> None:
    from ocrnet.evaluate import evaluate
    from test_data_cityscapes import make_cityscapes

    make_cityscapes(tmp_path, cities={"aachen": 1})
    with pytest.raises(OcrnetError, match="21 classes"):
        evaluate(_Engine.make(21), tmp_path, scale=(64, 32), progress=False)


def test_all_ignore_labels_warn_in_output_and_json(tmp_path: Path) -> None:
    from ocrnet.data.cityscapes import discover
    from ocrnet.evaluate import evaluate
    from test_data_cityscapes import make_cityscapes

    make_cityscapes(tmp_path, cities={"aachen": 2})
    empty = discover(tmp_path)[0].label
    cv2.imwrite(str(empty), np.full((32, 64), 255, np.uint8))
    result = evaluate(_Engine.make(), tmp_path, scale=(64, 32), progress=False)
    assert any("only ignored pixels" in w for w in result.to_json()["warnings"])
    assert "warning:" in result.table()


def test_trainids_saved_as_labelids_warn(tmp_path: Path) -> None:
    from ocrnet.data.cityscapes import discover
    from ocrnet.evaluate import evaluate_predictions
    from test_data_cityscapes import make_cityscapes

    labels = make_cityscapes(tmp_path / "data", cities={"aachen": 2})
    preds = tmp_path / "preds"
    preds.mkdir()
    for sample in discover(tmp_path / "data"):
        train = labels[sample.stem].copy()
        train[train == 255] = 0
        cv2.imwrite(str(preds / f"{sample.stem}_pred_labelIds.png"), train)  # wrong id space
    result = evaluate_predictions(preds, tmp_path / "data", progress=False)
    assert any("look like trainIds" in w for w in result.warnings)


# --- 5. API-side argument checks and the step cache ------------------------------------------
@pytest.mark.parametrize("field", ["iters", "batch_size", "workers"])
def test_train_refuses_zero_before_any_work(tmp_path: Path, field: str) -> None:
    from ocrnet.train import TrainConfig, train

    cfg = TrainConfig(data_root=str(tmp_path / "data"), out_dir=str(tmp_path / "out"),
                      **{field: 0})
    with pytest.raises(ArgumentError, match=field):
        train(cfg, progress=False)
    assert not (tmp_path / "out").exists()


def test_loader_and_eval_refuse_bad_worker_counts(tmp_path: Path) -> None:
    from ocrnet.data.loader import Loader
    from ocrnet.evaluate import evaluate_predictions

    with pytest.raises(ArgumentError, match="workers"):
        Loader([], workers=-1)
    with pytest.raises(ArgumentError, match="batch_size"):
        Loader([], batch_size=0)
    with pytest.raises(ArgumentError, match="workers"):
        evaluate_predictions(tmp_path, tmp_path, workers=0, progress=False)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[]", b'{"key": 1}', b""])
def test_a_corrupt_step_cache_entry_is_a_miss(tmp_path: Path, content: bytes) -> None:
    from ocrnet.pipeline import StepCache

    cache = StepCache(tmp_path, say=lambda _msg: None)
    (tmp_path / "steps" / "export.json").write_bytes(content)
    assert cache.run("export", "k1", lambda: {"done": 1}) == {"done": 1}
    assert cache.run("export", "k1", lambda: pytest.fail("not cached")) == {"done": 1}
