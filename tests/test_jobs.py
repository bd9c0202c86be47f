"""`predict` / `eval` on Ray (`ocrnet.jobs`): identical to in-process, on two nodes, through a
killed actor, resumed, with bad files. One session-wide two-node Ray instance (`ray_cluster`
in conftest.py), the demo model at 1x3x128x256 in OpenVINO fp32, 128x256 images."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from _engine_helpers import demo_package
from ocrnet.errors import OcrnetError
from ocrnet.evaluate import evaluate, evaluate_predictions
from ocrnet.predict import predict

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def package() -> Path:
    return demo_package("openvino", "fp32", (1, 3, 128, 256))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 val scenes at 128x256; the 4th image is corrupt (for --skip-bad)."""
    from ocrnet.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("jobs-data")
    write_dataset(root, train=0, val=8, size=(128, 256), workers=0, progress=False)
    images = sorted((root / "leftImg8bit" / "val").rglob("*.png"))
    images[3].write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 good images at 128x256 in city subfolders (predict mirrors the tree)."""
    from ocrnet.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("jobs-images")
    write_dataset(root, train=0, val=16, size=(128, 256), seed=7, workers=0, progress=False)
    return root / "leftImg8bit" / "val"


@pytest.fixture(scope="module")
def expected(package: Path, images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """In-process predict of `images` (labels + colour): the bytes every Ray run must write."""
    out = tmp_path_factory.mktemp("jobs-expected")
    predict(package, images, out, color=True, threads=1, progress=False)
    return out


def outputs(folder: Path, *, record: bool = True) -> dict[str, bytes]:
    """Every file's bytes (without the run record, `ocrnet-run.json`, unless `record`)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and (record or p.name != "ocrnet-run.json")}


def without_run(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("seconds", "ray")}


def test_eval_on_two_nodes_is_identical_and_ships_the_model(
        ray_cluster: Any, package: Path, data: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ocrnet.jobs.executor as jobs_executor

    model = tmp_path / "pkg"
    shutil.copytree(package, model)
    # A node keeps a copy by the manifest's digest, and may rightly reuse one an earlier job
    # left: this test's own manifest bytes (the same package, re-indented) make a model no
    # earlier job of the session has shipped, so every node must fetch it now.
    manifest = model / "ocrnet.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()), indent=3))
    in_process = evaluate(model, data, skip_bad=True, threads=1, progress=False,
                          save_predictions=tmp_path / "saved-here")
    expected = in_process.to_json()
    ship = jobs_executor.ship_model

    def ship_then_hide(ray: Any, path: Any) -> Any:
        shipped = ship(ray, path)
        Path(path).rename(tmp_path / "hidden")  # no actor can read the driver's copy now
        return shipped

    monkeypatch.setattr(jobs_executor, "ship_model", ship_then_hide)
    on_ray = evaluate(model, data, skip_bad=True, ray="auto", workers=2, threads=1,
                      progress=False, save_predictions=tmp_path / "saved-on-ray")
    got = on_ray.to_json()
    assert without_run(got) == without_run(expected)  # every number, the skipped file too
    assert on_ray.image_ids == in_process.image_ids and len(on_ray.image_ids) == 7
    assert (on_ray.per_image == in_process.per_image).all()  # each image's own matrix
    saved = outputs(tmp_path / "saved-on-ray")
    assert len(saved) == 7 and saved == outputs(tmp_path / "saved-here")
    assert [s["path"] for s in got["skipped"]] == [s["path"] for s in expected["skipped"]]
    workers = got["ray"]["workers_used"]
    assert len({w["node"] for w in workers}) == 2  # work landed on both nodes
    assert sum(w["images"] for w in workers) == 8
    # Each node fetched the model from the object store into its own copy, once ...
    assert sorted(w["node"] for w in workers if w["fetched_model"]) == \
        sorted({w["node"] for w in workers})
    for w in workers:  # ... and every actor opened that copy, never the driver's
        assert not w["model_path"].startswith(str(tmp_path))
        assert w["engine"] == {"INFERENCE_NUM_THREADS": 1, "ENABLE_CPU_PINNING": "engine default"}
    assert got["ray"]["model"]["sha256"] and got["ray"]["threads_per_worker"] == 1


def test_predict_on_ray_writes_the_same_bytes_through_a_killed_actor_and_resumes(
        ray_cluster: Any, package: Path, images: Path, expected: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """One actor pool: an actor killed mid-job is restarted, its unfinished task retried, and
    the folder ends byte-identical to in-process; then a rerun resumes from the run record."""
    from ocrnet.cli import main

    out = tmp_path / "out"
    results, killed = _predict_killing_an_actor(package, images, out)
    assert killed is not None and killed < 16, "the job ended before an actor could be killed"
    assert len(results) == 16
    assert outputs(out) == outputs(expected)  # none missing, none extra, every byte the same
    assert [Path(r["image"]).name for r in results] == sorted(
        p.name for p in images.rglob("*.png"))
    written = sorted(out.rglob("*_labelTrainIds.png"))
    for path in written[:3]:
        path.unlink()
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    report = tmp_path / "run.json"
    assert main(["predict", str(package), str(images), str(bad), "--out", str(out), "--color",
                 "--ray", "auto", "--threads", "1", "--skip-bad", "--json", str(report),
                 "--no-progress"]) == 0
    assert "resumed 13 image(s) already in" in capsys.readouterr().out
    run = json.loads(report.read_text())
    assert (run["resumed"], run["written"]) == (13, 3)
    assert [s["path"] for s in run["skipped"]] == [str(bad)]
    assert "decode" in run["skipped"][0]["reason"]
    # The bad image wrote nothing (the record differs: it owns the bad image's output names).
    assert outputs(out, record=False) == outputs(expected, record=False)


def _predict_killing_an_actor(package: Path, images: Path,
                              out: Path) -> tuple[list[dict[str, Any]], int | None]:
    """`predict --ray` with two actors; SIGKILL one as soon as a label PNG has landed."""
    import psutil

    done: dict[str, Any] = {}

    def job() -> None:
        try:
            done["result"] = predict(package, images, out, color=True, ray="auto", workers=2,
                                     threads=1, progress=False)
        except BaseException as err:  # re-raised below, on the test's thread
            done["error"] = err

    thread = threading.Thread(target=job)
    thread.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        if any(out.rglob("*_labelTrainIds.png")):  # mid-job: an actor has written something
            actors = [p for p in psutil.Process().children(recursive=True)
                      if "KernelActor" in " ".join(_cmdline(p))]
            if actors:
                killed = len(list(out.rglob("*_labelTrainIds.png")))
                os.kill(actors[0].pid, signal.SIGKILL)
        time.sleep(0.02)
    thread.join(120)
    assert "error" not in done, done.get("error")
    return done["result"], killed


def _cmdline(process: Any) -> list[str]:
    try:
        return process.cmdline()
    except Exception:  # the process ended meanwhile
        return []


def test_scoring_saved_predictions_on_ray_is_identical(
        ray_cluster: Any, package: Path, data: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    preds = Path("preds")  # relative: the Ray workers must resolve it in the driver's folder
    good = [p for p in (data / "leftImg8bit" / "val").rglob("*.png") if p.stat().st_size > 64]
    predict(package, good, preds, format="cityscapes", progress=False)
    expected = evaluate_predictions(preds, data, skip_bad=True, progress=False).to_json()
    got = evaluate_predictions(preds, data, skip_bad=True, ray="auto", progress=False).to_json()
    assert without_run(got) == without_run(expected)


def test_unreachable_address_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from ocrnet.jobs.cluster import connect

    with pytest.raises(OcrnetError, match=r"cannot reach a Ray cluster at '127\.0\.0\.1:9'"), \
            connect("127.0.0.1:9"):
        pass


def test_unreachable_address_from_the_cli(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    (tmp_path / "a.png").write_bytes(b"")
    run = subprocess.run([sys.executable, "-m", "ocrnet", "predict", str(tmp_path / "pkg"),
                          str(tmp_path / "a.png"), "--out", str(tmp_path / "out"),
                          "--ray", "127.0.0.1:9"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0 and "127.0.0.1:9" in run.stderr


def test_ray_not_installed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocrnet.jobs.cluster import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(OcrnetError, match=r"pip install 'ocrnet\[ray\]'"):
        require_ray()


class _FakeRay:
    def __init__(self, cpus: list[int]) -> None:
        self.cpus = cpus

    def nodes(self) -> list[dict[str, Any]]:
        return [{"Alive": True, "Resources": {"CPU": float(c)}} for c in self.cpus]


@pytest.mark.parametrize(("workers", "threads", "planned"), [
    (None, None, (2, 2, None)),   # one actor per node, all its cores, pinning left alone
    (None, 1, (4, 1, False)),     # as many 1-thread actors as fit; they share nodes: no pinning
    (3, None, (3, 1, False)),     # the cluster's CPUs shared out
    (1, 2, (1, 2, None)),
])
def test_actor_plans(workers: int | None, threads: int | None,
                     planned: tuple[int, int, bool | None]) -> None:
    from ocrnet.jobs.cluster import plan_actors

    plan = plan_actors(_FakeRay([2, 2]), workers, threads)
    assert (plan.workers, plan.threads, plan.pinning) == planned


@pytest.mark.parametrize(("workers", "threads"), [(5, 1), (None, 4), (0, None)])
def test_actor_plans_that_cannot_fit_are_one_line(workers: int | None,
                                                  threads: int | None) -> None:
    from ocrnet.jobs.cluster import plan_actors

    with pytest.raises(OcrnetError, match=r"do not fit|positive integer"):
        plan_actors(_FakeRay([2, 2]), workers, threads)


class _FakeDataset:
    """Output batches as Ray Data streams them, with a retried task's image delivered twice."""

    def __init__(self, batches: list[list[tuple[int, dict[str, Any]]]]) -> None:
        self.batches = batches

    def iter_batches(self, **_: Any) -> Any:
        import numpy as np

        for batch in self.batches:
            yield {"index": np.array([i for i, _ in batch]),
                   "record": np.array([json.dumps(r) for _, r in batch], dtype=object)}


def test_an_image_delivered_twice_counts_once_and_a_lost_one_is_an_error() -> None:
    from ocrnet.jobs.records import collect

    worker = {"node": "n1", "pid": 1}
    rec = {"value": 1, "worker": worker, "task": [0.0, 1.0]}
    seen: list[int] = []
    ds = _FakeDataset([[(0, rec), (1, rec)], [(1, {**rec, "value": 2}), (2, rec)]])
    out = collect(ds, 3, desc="t", progress=False, on_record=lambda i, r: seen.append(i))
    assert seen == [0, 1, 2] and out.repeats == 1 and out.records[1]["value"] == 1
    assert out.workers_json()[0]["images"] == 3
    with pytest.raises(OcrnetError, match="returned 2 of 3 images"):
        collect(_FakeDataset([[(0, rec), (1, rec)]]), 3, desc="t", progress=False,
                on_record=lambda i, r: None)


def test_resume_crosses_executors_and_refuses_another_model(
        package: Path, images: Path, expected: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The run record is the executor's business not: an in-process folder resumes whole on
    Ray (no cluster needed), and model B into model A's folder is refused, naming both."""
    from _engine_helpers import DEMO
    from ocrnet.cli import main
    from ocrnet.predict import predict_run

    out = tmp_path / "out"
    shutil.copytree(expected, out)
    run = predict_run(package, images, out, color=True, ray="auto", threads=1, progress=False)
    assert (run.resumed, run.images) == (16, [])
    other = DEMO / "ocrnet_hr18_synthetic_demo.pth"
    rc = main(["predict", str(other), str(images), "--out", str(out), "--color", "--ray",
               "auto", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.strip().count("\n") == 0, err
    assert other.name in err and str(package) in err and "--overwrite" in err
    assert outputs(out) == outputs(expected)  # nothing of model B was written
