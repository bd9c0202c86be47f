"""Hostile conditions for what the tool writes (issue 12): never lose a user's file. Atomic
output on failed writes, full disks and killed writers; a package's --overwrite deletes only what
is provably ours. Each test names the pattern it pins down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _hostile import tiny_package
from ocrnet.errors import OutputError, PackageError
from ocrnet.fileio import atomic_path, atomic_write_bytes, atomic_write_text, clean_stale_temps


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


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

def test_overwrite_never_deletes_a_folder_with_an_unrelated_manifest(tmp_path: Path) -> None:
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "ocrnet.json").write_text('{"my": "settings"}')
    (thesis / "thesis.tex").write_text("years of work")
    with pytest.raises(PackageError, match="not replacing it"):
        tiny_package(thesis, overwrite=True)
    assert (thesis / "thesis.tex").read_text() == "years of work"


def test_overwrite_refuses_a_package_holding_unlisted_files(tmp_path: Path) -> None:
    pkg = tiny_package(tmp_path / "pkg")
    (pkg / "notes.txt").write_text("mine")
    with pytest.raises(PackageError, match=r"notes\.txt"):
        tiny_package(pkg, overwrite=True)
    (pkg / "notes.txt").unlink()
    tiny_package(pkg, overwrite=True)  # exactly a package: replaced
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

    out = tiny_package(tmp_path / "pkg")
    with PackageWriter(out, overwrite=True) as writer:
        (writer.dir / "model.bin").write_bytes(b"new")
        shutil.rmtree(out)
        tiny_package(tmp_path / "other", b"other weights")
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
    tiny_package(tmp_path / "pkg")
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

    out = tiny_package(tmp_path / "pkg", b"old weights")
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
        tiny_package(out, b"other")
    assert (out / "model.bin").read_bytes() == b"old weights"
    read_package(out)
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]
    tiny_package(out, b"newer", overwrite=True)
    assert (out / "model.bin").read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_output_folder_is_checked_before_the_work(tmp_path: Path) -> None:
    from ocrnet.package import PackageWriter

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="file"):
        PackageWriter(tmp_path / "file" / "pkg")
