"""ocrnet.export_cache: builds from one checkpoint export once per key; entries are verified,
locked and bounded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import _engine_helpers as h
from ocrnet import export_cache


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(export_cache.ENV, str(folder))
    return folder


def _writer(out: Path, data: bytes, calls: list[bytes]) -> object:
    def export() -> None:
        calls.append(data)
        out.write_bytes(data)
    return export


def test_a_checkpoint_build_reuses_the_export_of_its_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """h.onnx_file() went through the run's cache under the key of a static fp32 build without
    Winograd: that build exports nothing (the exporter would fail the test)."""
    from ocrnet.build import build_package
    from ocrnet.fileio import sha256_file
    from ocrnet.package import read_package

    h.onnx_file()
    monkeypatch.setattr("ocrnet.build.export_onnx",
                        lambda *a, **k: pytest.fail("exported again"))
    pkg = build_package(h.checkpoint(), tmp_path / "p", backend="onnxruntime", shape=h.SHAPE,
                        winograd=False)
    meta = read_package(pkg.path).meta
    assert meta["outputs"] == ["labels", "logits"] and meta["graph_rewrites"] == {}
    assert meta["source"]["sha256"] == sha256_file(h.checkpoint())


def test_unset_means_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(export_cache.ENV, raising=False)
    calls: list[bytes] = []
    for _ in range(2):
        assert not export_cache.exported(tmp_path / "m.onnx", "k",
                                         _writer(tmp_path / "m.onnx", b"graph", calls))
    assert calls == [b"graph", b"graph"] and export_cache.folder() is None


def test_second_use_copies_the_verified_entry(tmp_path: Path, cache: Path) -> None:
    calls: list[bytes] = []
    assert not export_cache.exported(tmp_path / "a.onnx", "k", _writer(tmp_path / "a.onnx",
                                                                        b"graph", calls))
    assert export_cache.exported(tmp_path / "b.onnx", "k", _writer(tmp_path / "b.onnx",
                                                                    b"other", calls))
    assert calls == [b"graph"] and (tmp_path / "b.onnx").read_bytes() == b"graph"


def test_an_entry_with_other_bytes_is_never_used(tmp_path: Path, cache: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[bytes] = []
    export_cache.exported(tmp_path / "a.onnx", "k", _writer(tmp_path / "a.onnx", b"graph", calls))
    (cache / "k.onnx").write_bytes(b"planted")
    assert not export_cache.exported(tmp_path / "b.onnx", "k",
                                     _writer(tmp_path / "b.onnx", b"fresh", calls))
    assert (tmp_path / "b.onnx").read_bytes() == b"fresh" and calls == [b"graph", b"fresh"]
    err = capsys.readouterr().err
    assert "not used" in err and "sha256" in err and str(cache / "k.onnx") in err
    assert (cache / "k.onnx").read_bytes() == b"fresh"  # stored again, verified next time


def test_one_export_per_key_at_a_time(tmp_path: Path, cache: Path) -> None:
    calls: list[bytes] = []

    def slow(out: Path) -> object:
        def export() -> None:
            time.sleep(0.3)
            calls.append(b"graph")
            out.write_bytes(b"graph")
        return export

    threads = [threading.Thread(target=export_cache.exported,
                                args=(tmp_path / f"{i}.onnx", "k", slow(tmp_path / f"{i}.onnx")))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [b"graph"]
    assert (tmp_path / "0.onnx").read_bytes() == (tmp_path / "1.onnx").read_bytes() == b"graph"


def test_at_most_max_entries_least_recently_used_go(tmp_path: Path, cache: Path) -> None:
    calls: list[bytes] = []
    keys = [f"k{i}" for i in range(export_cache.MAX_ENTRIES + 2)]
    for i, key in enumerate(keys):
        if i == export_cache.MAX_ENTRIES:  # full: k0 used again is the most recent
            export_cache.exported(tmp_path / "again.onnx", "k0", _writer(tmp_path / "again.onnx",
                                                                          b"unused", calls))
            time.sleep(0.02)
        out = tmp_path / f"{key}.onnx"
        export_cache.exported(out, key, _writer(out, key.encode(), calls))
        time.sleep(0.02)  # distinct modification times
    assert b"unused" not in calls
    kept = sorted(p.stem for p in cache.glob("*.onnx"))
    assert len(kept) == export_cache.MAX_ENTRIES and "k0" in kept
    assert "k1" not in kept and "k2" not in kept


def test_the_key_names_every_option_and_the_source() -> None:
    base = {"dynamic": False, "dynamic_batch": False, "winograd": False,
            "outputs": ["labels", "logits"], "opset": 18}
    key = export_cache.export_key("a" * 64, (1, 3, 64, 128), **base)
    assert key == export_cache.export_key("a" * 64, [1, 3, 64, 128], **base)
    others = [export_cache.export_key("b" * 64, (1, 3, 64, 128), **base),
              export_cache.export_key("a" * 64, (2, 3, 64, 128), **base)]
    for name, value in [("dynamic", True), ("dynamic_batch", True), ("winograd", True),
                        ("outputs", ["labels"]), ("opset", 17)]:
        others.append(export_cache.export_key("a" * 64, (1, 3, 64, 128), **{**base,
                                                                             name: value}))
    assert len({key, *others}) == len(others) + 1


def test_an_unusable_cache_never_fails_the_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A cache folder that cannot be made (here: a path under a regular file)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(export_cache.ENV, str(blocker / "cache"))
    calls: list[bytes] = []
    assert not export_cache.exported(tmp_path / "m.onnx", "k",
                                     _writer(tmp_path / "m.onnx", b"graph", calls))
    assert calls == [b"graph"] and (tmp_path / "m.onnx").read_bytes() == b"graph"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unusable" in err[0] and "exporting without it" in err[0]


def test_an_entry_that_cannot_be_stored_never_fails_the_export(
        tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: the store's OutputError (here the entry's name is a folder) escaped."""
    (cache / "k.onnx" / "inside").mkdir(parents=True)
    calls: list[bytes] = []
    assert not export_cache.exported(tmp_path / "m.onnx", "k",
                                     _writer(tmp_path / "m.onnx", b"graph", calls))
    assert calls == [b"graph"] and (tmp_path / "m.onnx").read_bytes() == b"graph"
    assert "entry not stored" in capsys.readouterr().err
