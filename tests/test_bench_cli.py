"""`ocrnet bench`: argument and package errors, `BenchSettings`, and the CLI (report files,
--isolate, up-front checks), over the fake engines of tests/_bench_fakes.py."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from _bench_fakes import SHAPE, SleepEngine, quick
from ocrnet import bench
from ocrnet.bench import benchmark, parse_shape
from ocrnet.engines.base import Engine, InferResult
from ocrnet.errors import OcrnetError, PackageError


# --- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["1024", "0x64", "axb", "1024x2048x3", ""])
def test_bad_shape(text: str) -> None:
    with pytest.raises(OcrnetError, match="HEIGHTxWIDTH"):
        parse_shape(text)


def test_shape_parsing() -> None:
    assert parse_shape("1024x2048") == (1024, 2048) == parse_shape((1024, 2048))
    assert parse_shape("1x3x1024x2048") == (1024, 2048) == parse_shape("4x3x1024x2048")


def test_shape_n_and_batch() -> None:
    """--shape is build's NxCxHxW (HxW = 1x3xHxW); its N is the batch unless --batch says."""
    from ocrnet.bench.settings import BenchSettings

    assert BenchSettings(shape="4x3x64x128").batch == (4,)
    assert BenchSettings(shape="4x3x64x128", batch=4).batch == (4,)
    assert BenchSettings(shape="1x3x64x128", batch=[1, 8]).batch == (1, 8)
    assert BenchSettings(shape="64x128", batch=[1, 8]) == BenchSettings(shape=(1, 3, 64, 128),
                                                                        batch=(1, 8))
    s = BenchSettings(shape="4x3x64x128")
    assert s.shape == (64, 128) and BenchSettings.from_json(s.to_json()) == s
    with pytest.raises(OcrnetError, match=r"says batch 4 but --batch says 1 8: .*"
                                          r"--shape 64x128 --batch 1 8"):
        BenchSettings(shape="4x3x64x128", batch=[1, 8])


def test_bad_package_paths(tmp_path: Any) -> None:
    with pytest.raises(PackageError, match="no model at"):
        quick(str(tmp_path / "missing"))
    with pytest.raises(PackageError, match=r"no ocrnet\.json"):
        quick(str(tmp_path))


def test_static_package_rejects_other_shapes() -> None:
    eng = SleepEngine("static", (0.1,), input_shape=[1, 3, 32, 64])
    quick(eng, iterations=1)  # its own shape is fine
    with pytest.raises(OcrnetError, match=r"built for input .* 1x3x32x64 .* batch 2"):
        quick(eng, batch=2)
    with pytest.raises(OcrnetError, match="64x64"):
        quick(SleepEngine("dyn", (0.1,), input_shape=[-1, 3, 32, "W"]), shape="64x64")


def test_runtime_error_on_first_call_is_named() -> None:
    class Broken(SleepEngine):
        def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
            raise ValueError("Got invalid dimensions for input")

    with pytest.raises(OcrnetError, match=r"broken failed on input \(1, 3, 32, 64\)"):
        quick(Broken("broken"))


def test_conflicting_options() -> None:
    with pytest.raises(OcrnetError, match="not both"):
        quick(SleepEngine("x"), duration=1.0)
    with pytest.raises(OcrnetError, match="batch must be"):
        quick(SleepEngine("x"), batch=[0])


# --- settings --------------------------------------------------------------------------------
def test_settings_defaults_and_normalisation(tmp_path: Any) -> None:
    from ocrnet.bench.settings import DURATION_S, WARMUP_S, BenchSettings

    s = BenchSettings()
    assert s.shape == (1024, 2048) and s.batch == (1,) and s.device == "cpu"
    assert s.warmup_seconds == WARMUP_S and s.duration_s == DURATION_S
    s = BenchSettings(batch=8, shape="64x128", end_to_end=tmp_path, warmup=3, iterations=2)
    assert s.batch == (8,) and s.shape == (64, 128) and s.end_to_end == str(tmp_path)
    assert s.warmup_seconds == 0.0 and s.duration_s is None
    assert BenchSettings.from_json(json.loads(json.dumps(s.to_json()))) == s
    with pytest.raises(OcrnetError, match="unknown benchmark settings: bogus"):
        BenchSettings.from_json({"bogus": 1})


@pytest.mark.parametrize(("field", "value"), [
    ("iterations", 0), ("iterations", 2.5), ("duration", 0), ("duration", -1.0),
    ("batch", [1, 0]), ("streams", 0), ("threads", 0), ("min_iterations", 0), ("warmup", -1),
    ("warmup_s", -0.5), ("round_s", -1.0), ("seed", -1), ("device", ""),
])
def test_settings_reject_out_of_range(field: str, value: Any) -> None:
    from ocrnet.bench.settings import BenchSettings
    from ocrnet.errors import ArgumentError

    with pytest.raises(ArgumentError, match=f"^{field} must be"):
        BenchSettings(**{field: value})


def test_settings_reject_conflicts_and_bad_shapes() -> None:
    from ocrnet.bench.settings import BenchSettings

    with pytest.raises(OcrnetError, match="batch must list at least one"):
        BenchSettings(batch=[])
    with pytest.raises(OcrnetError, match="not both"):
        BenchSettings(warmup=1, warmup_s=1.0)
    with pytest.raises(OcrnetError, match="HEIGHTxWIDTH"):
        BenchSettings(shape="0x64")


def test_invalid_settings_fail_before_any_model_opens() -> None:
    opened = []
    with pytest.raises(OcrnetError, match="iterations must be"):
        benchmark([lambda: opened.append(1) or SleepEngine("x")], shape=SHAPE, iterations=0)
    assert opened == []


def test_settings_module_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = ("import sys, ocrnet.bench.settings; "
            "print(sorted({'numpy', 'torch', 'cv2', 'ocrnet.engines'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- CLI -------------------------------------------------------------------------------------
def test_cli_writes_json_markdown_png(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import ocrnet.engines
    from ocrnet.cli import main

    opened: list[tuple[str, dict[str, Any]]] = []

    def fake_open(path: Any, device: str = "cpu", **opts: Any) -> Engine:
        opened.append((str(path), {"device": device, **opts}))
        return SleepEngine(path.name, (2.0,) if path.name == "fast" else (6.0,))

    monkeypatch.setattr(ocrnet.engines, "open_model", fake_open, raising=False)
    for name in ("base", "fast"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ocrnet.json").write_text("{}")
    out = tmp_path / "out"
    rc = main(["bench", str(tmp_path / "base"), str(tmp_path / "fast"), "--shape", SHAPE,
               "--batch", "1", "2", "--warmup", "1", "--iterations", "5", "--round-s", "0",
               "--threads", "2", "--json", str(out / "b.json"), "--markdown", str(out / "b.md"),
               "--plot", str(out / "b.png")])
    assert rc == 0
    assert opened[0][1] == {"device": "cpu", "threads": 2}
    table = capsys.readouterr().out
    assert "ratio" in table and table.count("fast") == 2
    data = json.loads((out / "b.json").read_text())
    assert [r["batch"] for r in data["results"]] == [1, 1, 2, 2]
    assert data["results"][0]["ratio_to_first"] == 1.0
    assert data["results"][1]["ratio_to_first"] > 1.5  # 2 ms against 6 ms sleeps
    assert "| model |" in (out / "b.md").read_text()
    assert (out / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merge_reports_round_trips_json_and_sets_ratios() -> None:
    runs = [benchmark(SleepEngine(name, (ms,)), shape=SHAPE, iterations=5, warmup=0)
            for name, ms in (("slow", 6.0), ("quick", 2.0))]
    loaded = [bench.BenchReport.from_json(json.loads(json.dumps(r.to_json()))) for r in runs]
    merged = bench.merge_reports(loaded)
    assert [r.model for r in merged.results] == ["slow", "quick"]
    assert merged.results[0].ratio_to_first == 1.0
    assert merged.results[1].ratio_to_first > 1.5  # 2 ms against 6 ms sleeps
    assert merged.settings["isolated"] is True
    with pytest.raises(OcrnetError, match="schema"):
        bench.BenchReport.from_json({"schema": 99})


def test_cli_isolate_runs_each_model_in_its_own_process(tmp_path: Any,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """For batch 8 at 1024x2048, where models sharing one process ran out of memory."""
    import _engine_helpers as h
    from ocrnet.cli import main

    out = tmp_path / "b.json"
    rc = main(["bench", str(h.checkpoint()), str(h.package("openvino", "fp32")), "--isolate",
               "--shape", "64x128", "--iterations", "2", "--warmup", "0", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["results"]] == ["torch", "openvino"]
    assert data["results"][0]["ratio_to_first"] == 1.0 and data["settings"]["isolated"]
    assert data["settings"]["seed"] is not None  # the same inputs in every process
    assert main(["bench", str(h.checkpoint()), str(tmp_path / "nope"), "--isolate",
                 "--shape", "64x128", "--iterations", "1"]) == 1
    assert "in its own process failed" in capsys.readouterr().err


def test_cli_user_error_exits_1(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from ocrnet.cli import main

    assert main(["bench", str(tmp_path / "nope"), "--shape", SHAPE]) == 1
    assert "no model at" in capsys.readouterr().err
    assert main(["bench", str(tmp_path), "--shape", "12"]) == 1
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--iterations", "0"], ["--duration", "0"], ["--batch", "0"],
                                 ["--streams", "-1"], ["--warmup", "-1"]])
def test_cli_rejects_nonsense_numbers_up_front(tmp_path: Any, bad: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from ocrnet.cli import main

    # one line naming the option, exit 1, before any model opens
    assert main(["bench", str(tmp_path / "never-opened"), *bad]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and bad[0].removeprefix("--") in err[0]


def test_cli_options_are_the_settings_fields() -> None:
    """Every BenchSettings field is an option of the same name, default read from it."""
    import argparse

    from ocrnet.bench import BenchSettings
    from ocrnet.cli import bench as cli_bench

    sub = argparse.ArgumentParser().add_subparsers()
    cli_bench.register(sub)
    args = sub.choices["bench"].parse_args(["m.pth"])
    assert cli_bench.settings_of(args) == BenchSettings()
