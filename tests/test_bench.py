"""`ocrnet bench`: statistics, interleaving, ratios, streams, errors, report files, FLOPs.

Fake engines sleep known durations, so the harness is checked without any real backend.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from ocrnet import bench
from ocrnet.bench import (
    LATENCY_KEYS,
    benchmark,
    latency_stats,
    parse_shape,
    synthetic_batch,
    timing,
)
from ocrnet.engines.base import Engine, InferResult
from ocrnet.errors import OcrnetError, PackageError

SHAPE = "32x64"  # tiny inputs: the fakes ignore them, the harness still builds them


class SleepEngine(Engine):
    """Sleeps `durations_ms[i % len]` on call i; logs (name, batch) of every call to `log`."""

    backend = "fake"

    def __init__(self, name: str, durations_ms: tuple[float, ...] = (2.0,),
                 log: list[str] | None = None, **meta: Any) -> None:
        super().__init__()
        self.name, self.durations, self.log, self.calls = name, durations_ms, log, 0
        self._metadata = {"backend": "fake", "precision": "fp32", "device": "cpu",
                          "name": name, **meta}
        self._lock = threading.Lock()

    @classmethod
    def build(cls, request: Any, out_dir: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def open(cls, package: Any, device: str = "cpu", **opts: Any) -> Engine:
        raise NotImplementedError

    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        with self._lock:
            d = self.durations[self.calls % len(self.durations)]
            self.calls += 1
            if self.log is not None:
                self.log.append(self.name)
        time.sleep(d / 1e3)
        n, _, h, w = batch.shape
        return InferResult(labels=np.zeros((n, h, w), np.uint8))


class AsyncSleepEngine(SleepEngine):
    """Also offers the `infer_async` hook, backed by a pool of `workers` requests."""

    def __init__(self, *args: Any, workers: int = 4, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.pool = ThreadPoolExecutor(workers)
        self.async_calls = 0

    def infer_async(self, batch: np.ndarray) -> Future:
        self.async_calls += 1
        return self.pool.submit(self.infer, batch)

    def _close_impl(self) -> None:
        self.pool.shutdown()


def quick(models: Any, **kw: Any) -> bench.BenchReport:
    opts = {"shape": SHAPE, "warmup": 0, "iterations": 10, "round_s": 0.0, **kw}
    return benchmark(models, **opts)


# --- statistics ------------------------------------------------------------------------------
def test_latency_stats_exact() -> None:
    ns = [int(x * 1e6) for x in range(1, 101)]  # 1..100 ms
    s = latency_stats(ns)
    assert list(s) == list(LATENCY_KEYS)
    assert s["min"] == 1 and s["max"] == 100 and s["mean"] == 50.5
    assert s["p50"] == 50.5 and s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)


def test_measured_statistics_of_alternating_sleeps() -> None:
    eng = SleepEngine("alt", (2.0, 4.0))
    r = quick(eng, iterations=40).results[0]
    lat, samples = r.latency_ms, np.array(r.latency_samples_ms)
    assert r.iterations == 40 and len(samples) == 40
    assert lat == pytest.approx(latency_stats(samples * 1e6), abs=1e-3)  # from the samples
    # sleep() never returns early but overshoots, by a lot on a loaded machine: only lower
    # bounds are tight; the 2 ms step between alternate calls survives the overshoot.
    assert lat["min"] >= 2.0 and lat["mean"] >= 3.0 and lat["p95"] >= 4.0
    # (the first inference, reported apart, took the first 2 ms: timed calls start at 4 ms)
    assert np.median(samples[::2]) - np.median(samples[1::2]) == pytest.approx(2.0, abs=0.7)
    assert lat["max"] >= lat["p99"] >= lat["p95"] >= lat["p90"] >= lat["p50"] >= lat["min"]
    assert r.throughput_ips == pytest.approx(1e3 / lat["mean"], rel=0.02)


class VirtualClock:
    """Stands in for `time` in ocrnet.bench.timing (the benchmark's one clock): engines advance
    it, so durations are exact."""

    def __init__(self) -> None:
        self.ns = 0

    def perf_counter_ns(self) -> int:
        return self.ns

    def perf_counter(self) -> float:
        return self.ns / 1e9

    time_ns, strftime, sleep = staticmethod(time.time_ns), staticmethod(time.strftime), \
        staticmethod(time.sleep)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    virtual = VirtualClock()
    monkeypatch.setattr(timing, "time", virtual)
    return virtual


class TickEngine(SleepEngine):
    """Advances the virtual clock by its durations instead of sleeping."""

    def __init__(self, clock: VirtualClock, name: str, durations_ms: tuple[float, ...]) -> None:
        super().__init__(name, durations_ms)
        self.clock = clock

    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        self.clock.ns += int(self.durations[self.calls % len(self.durations)] * 1e6)
        self.calls += 1
        return InferResult(labels=np.zeros(batch.shape[:1] + batch.shape[2:], np.uint8))


def test_statistics_exact_on_a_virtual_clock(clock: VirtualClock) -> None:
    r = quick(TickEngine(clock, "tick", (2.0, 4.0)), iterations=40, batch=2).results[0]
    assert r.latency_ms == {"min": 2.0, "mean": 3.0, "p50": 3.0, "p90": 4.0, "p95": 4.0,
                            "p99": 4.0, "max": 4.0}
    assert r.throughput_ips == pytest.approx(2 / 3e-3)


def test_synthetic_inputs_are_realistic_and_fresh() -> None:
    rng = np.random.default_rng(0)
    x = synthetic_batch(2, 64, 96, rng)
    assert x.shape == (2, 3, 64, 96) and x.dtype == np.float32
    assert np.isfinite(x).all() and np.abs(x).max() <= 2.7  # (0..255 - mean) / std
    assert x.std() > 0.3 and not np.array_equal(x[0], x[1])
    assert not np.array_equal(x, synthetic_batch(2, 64, 96, rng))


# --- interleaving and ratios -----------------------------------------------------------------
def test_models_are_interleaved_round_robin() -> None:
    log: list[str] = []
    a, b = SleepEngine("A", (0.2,), log), SleepEngine("B", (0.2,), log)
    quick([a, b], iterations=4)
    # first inference of each, then alternating blocks of one call (round_s=0)
    assert log == ["A", "B"] + ["A", "B"] * 4


def test_blocks_follow_round_length() -> None:
    log: list[str] = []
    a, b = SleepEngine("A", (1.0,), log), SleepEngine("B", (1.0,), log)
    quick([a, b], iterations=6, round_s=1.0)  # a block longer than all 6 calls
    assert "".join(log[2:]) == "AAAAAABBBBBB"


def test_ratio_to_first_and_batches(clock: VirtualClock) -> None:
    slow, fast = TickEngine(clock, "slow", (4.0,)), TickEngine(clock, "fast", (2.0,))
    rep = quick([slow, fast], batch=[1, 2])
    assert [(r.model, r.batch) for r in rep.results] == [
        ("slow", 1), ("fast", 1), ("slow", 2), ("fast", 2)]
    by = {(r.model, r.batch): r for r in rep.results}
    assert by["slow", 1].ratio_to_first == by["slow", 2].ratio_to_first == 1.0
    assert by["fast", 1].ratio_to_first == by["fast", 2].ratio_to_first == 2.0
    # same time per call, twice the images per call
    assert by["slow", 2].throughput_ips == 2 * by["slow", 1].throughput_ips == 500.0


@pytest.mark.parametrize("engine_cls", [SleepEngine, AsyncSleepEngine])
def test_streams_keep_requests_in_flight(engine_cls: type[SleepEngine]) -> None:
    eng = engine_cls("s", (5.0,))
    # Rounds of ~10 waves, so thread start-up and the drain at a block's end weigh little.
    r = quick(eng, iterations=20, streams=4, round_s=0.05).results[0]
    assert r.streams_mode == ("async" if engine_cls is AsyncSleepEngine else "threads")
    assert r.latency_ms_streams is not None and r.throughput_ips_streams is not None
    assert r.throughput_ips_streams > 2.0 * r.throughput_ips  # 4 sleeping requests overlap
    if engine_cls is AsyncSleepEngine:
        assert eng.async_calls == 20 * 4
        eng.close()


def test_gflops_from_flop_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocrnet import flops

    seen = []

    def fake_count(variant: str, h: int, w: int, num_classes: int = 19) -> flops.FlopCount:
        seen.append((variant, h, w, num_classes))
        return flops.FlopCount(flops=10**9, by_op={})

    monkeypatch.setattr(flops, "count_flops", fake_count)
    r = quick(SleepEngine("m", (2.0,), variant="hr18"), batch=2).results[0]
    assert seen == [("hr18", 32, 64, 19)]
    assert r.gflop_per_image == 1.0
    assert r.gflops_per_s == pytest.approx(r.throughput_ips, rel=0.01)
    unknown = quick(SleepEngine("m", (1.0,)), iterations=2).results[0]
    assert unknown.gflops_per_s is None and "variant" in unknown.notes[0]


# --- report ----------------------------------------------------------------------------------
RESULT_KEYS = {
    "model", "backend", "precision", "device", "batch", "shape", "iterations", "latency_ms",
    "throughput_ips", "gflops_per_s", "gflop_per_image", "peak_rss_mb", "model_rss_mb",
    "gpu_peak_mb", "load_s", "first_inference_ms", "ratio_to_first", "streams", "streams_mode",
    "throughput_ips_streams", "latency_ms_streams", "ratio_to_first_streams", "end_to_end",
    "notes", "latency_samples_ms",
}


def test_json_schema_is_stable() -> None:
    rep = quick([SleepEngine("a", (1.0,)), lambda: SleepEngine("b", (1.0,))], iterations=3)
    data = json.loads(json.dumps(rep.to_json()))
    assert set(data) == {"schema", "machine", "settings", "warnings", "results"}
    assert {"cpu", "cores_usable", "cpu_flags", "gpu", "libraries"} <= set(data["machine"])
    assert {"torch", "onnxruntime", "openvino", "numpy"} <= set(data["machine"]["libraries"])
    assert isinstance(data["settings"]["seed"], int)
    for res in data["results"]:
        assert set(res) == RESULT_KEYS
        assert set(res["latency_ms"]) == set(LATENCY_KEYS)
        assert res["peak_rss_mb"] > 0
    assert data["results"][0]["load_s"] is None  # an engine passed in open: no load to time
    assert data["results"][1]["load_s"] >= 0  # a callable: its call is the load


def test_end_to_end_stages(tmp_path: Any) -> None:
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((32, 64, 3), 40 * i, np.uint8))
    r = quick(SleepEngine("e", (1.0,)), iterations=2, end_to_end=tmp_path).results[0]
    e = r.end_to_end
    assert e is not None and e["images"] == 3 and e["throughput_ips"] > 0
    assert e["input_shapes"] == ["1024x2048"]  # mmseg upscales to fit 2048x1024
    assert set(e["per_image_ms"]) == set(bench.E2E_STAGES)
    assert e["per_image_ms"]["infer"] >= 1.0
    assert "end-to-end" in bench.BenchReport({}, {}, [r]).table()


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


# --- FLOPs -----------------------------------------------------------------------------------
def test_flop_count_of_a_tiny_model() -> None:
    import torch

    from ocrnet.flops import count_model_flops

    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Flatten(),
                                    torch.nn.Linear(8 * 4 * 4, 5))
    count = count_model_flops(model, (2, 3, 4, 4))  # per image
    assert count.by_op == {"convolution": 2 * 8 * 3 * 9 * 16, "addmm": 2 * 128 * 5}
    assert count.flops == sum(count.by_op.values())


def test_hr18_flops_match_the_issue() -> None:
    from ocrnet.flops import count_flops

    # The issue quotes 852 GFLOP for hr18 at 1x3x1024x2048 (conv + matmul, MACs x 2).
    assert count_flops("hr18", 1024, 2048).gflops == pytest.approx(852, abs=0.5)
