"""Engine packages: atomic writes, manifest checks, tamper and interruption detection."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ocrnet.errors import PackageError
from ocrnet.package import (
    FORMAT_VERSION,
    MANIFEST,
    PackageWriter,
    is_package,
    read_package,
    sha256_file,
)


def _write(out: Path, **kw: object) -> Path:
    with PackageWriter(out, **kw) as writer:  # type: ignore[arg-type]
        (writer.dir / "model.bin").write_bytes(b"\x00weights" * 100)
        (writer.dir / "sub").mkdir()
        (writer.dir / "sub" / "model.xml").write_text("<net/>")
        writer.commit({"backend": "openvino", "precision": "force_float32"})
    return out


def test_round_trip_hashes_every_file(tmp_path: Path) -> None:
    pkg = read_package(_write(tmp_path / "pkg"))
    assert pkg.backend == "openvino" and pkg.precision.value == "fp32"  # alias normalised
    assert set(pkg.files) == {"model.bin", "sub/model.xml"}
    assert pkg.files["model.bin"] == sha256_file(pkg.file("model.bin"))
    assert pkg.meta["format_version"] == FORMAT_VERSION
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging dir left"


@pytest.mark.parametrize("damage", ["change", "delete"])
def test_tampered_package_is_refused(tmp_path: Path, damage: str) -> None:
    out = _write(tmp_path / "pkg")
    target = out / "sub" / "model.xml"
    if damage == "change":
        target.write_text("<net evil='1'/>")
    else:
        target.unlink()
    with pytest.raises(PackageError, match=r"changed since|missing"):
        read_package(out)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    out = _write(tmp_path / "pkg")
    meta = json.loads((out / MANIFEST).read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (out / MANIFEST).write_text(json.dumps(meta))
    with pytest.raises(PackageError, match="newer than this ocrnet"):
        read_package(out)


def test_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="does not exist"):
        read_package(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(PackageError, match=r"no ocrnet\.json"):
        read_package(tmp_path / "plain")
    (tmp_path / "plain" / MANIFEST).write_text("{not json")
    with pytest.raises(PackageError, match="cannot be read"):
        read_package(tmp_path / "plain")


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), PackageWriter(tmp_path / "pkg") as writer:
        (writer.dir / "model.bin").write_bytes(b"half")
        raise RuntimeError("backend crashed")
    assert list(tmp_path.iterdir()) == []


def test_killed_build_is_never_loadable(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, signal
        from ocrnet.package import PackageWriter
        w = PackageWriter({str(tmp_path / "pkg")!r})
        (w.dir / "model.bin").write_bytes(b"half written")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode != 0
    assert not (tmp_path / "pkg").exists()
    (partial,) = tmp_path.iterdir()
    assert not is_package(partial)
    with pytest.raises(PackageError, match="interrupted build"):
        read_package(partial)


def test_overwrite_rules(tmp_path: Path) -> None:
    out = _write(tmp_path / "pkg")
    with pytest.raises(PackageError, match="--overwrite"):
        _write(out)
    old = read_package(out).meta["created"]
    _write(out, overwrite=True)
    assert read_package(out).meta["created"] >= old
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(PackageError, match="not an engine package"):
        _write(tmp_path / "user", overwrite=True)
    assert (tmp_path / "user" / "notes.txt").exists()
