"""`predict --ray`: label PNGs for many images on a Ray cluster, the same bytes as in-process.

The driver plans the job exactly as `ocrnet.predict.predict` does (`plan_jobs`: the same image
discovery, output names and checks), leaves out images whose outputs are all already in `--out`
(resume: files are written atomically, so one that exists is complete), ships the model through
the object store and streams one row per image through Ray Data's `map_batches` into an actor
pool. Each actor opens the model once and runs `ocrnet.predict.predict_jobs` (decode +
preprocess with OpenCV, `Engine.labels_at`, atomic PNG writes) on its rows: the one loop an
in-process run uses, hence the same files. Inputs and `--out` must be reachable by every node at
the same path (a shared mount); the model need not be.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ocrnet import defaults
from ocrnet.data.images import DEFAULT_MAX_PIXELS
from ocrnet.data.loader import SkippedFile
from ocrnet.data.transforms import Scale, parse_scale
from ocrnet.engines.base import Engine
from ocrnet.errors import BadFileError, OcrnetError
from ocrnet.jobs.cluster import (
    ActorPlan,
    connect,
    images_per_task,
    map_options,
    plan_actors,
    rows_dataset,
)
from ocrnet.jobs.records import Collected, collect
from ocrnet.jobs.shipping import ShippedModel, release_model, ship_model
from ocrnet.jobs.worker import EngineWorker
from ocrnet.predict import COLOR_SUFFIX, FORMATS, OVERLAY_SUFFIX, plan_jobs, predict_jobs


@dataclass
class RayPredictResult:
    """What a `predict --ray` run did: `images` as `predict` returns them (written this run,
    or skipped with `skip_bad`), in input order; `resumed` images were already in `out_dir`."""

    images: list[dict[str, Any]]
    resumed: int
    skipped: list[SkippedFile]
    ray: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return sum(1 for r in self.images if "skipped" not in r)

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "written": self.written, "resumed": self.resumed,
                "skipped": [s.to_json() for s in self.skipped], "seconds": round(self.seconds, 3),
                "ray": self.ray}


def predict_on_ray(
    model: Engine | str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    address: str = "local",
    format: str = defaults.PREDICT_FORMAT,
    color: bool = False,
    overlay: bool = False,
    opacity: float = defaults.OPACITY,
    scale: Scale | str | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    device: str = defaults.DEVICE,
    resize: str = defaults.RESIZE,
    workers: int | None = None,
    threads: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    trust_checkpoint: bool = False,
    trust_package: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> RayPredictResult:
    """`ocrnet.predict.predict` on the Ray cluster at `address` (`local`, `auto`, HOST:PORT).

    `workers` engine actors (default: one per node) of `threads` inference threads each
    (default: the node's cores). Images whose outputs are all in `out_dir` already are not
    predicted again (`resumed`). Without `skip_bad` the first unreadable image stops the job
    with a `BadFileError` naming it.
    """
    if isinstance(model, Engine):
        raise OcrnetError("predict on Ray needs a model path (package folder, .onnx or .pth): "
                          "an open engine cannot travel to other machines")
    start = time.perf_counter()
    jobs = plan_jobs(inputs, out_dir, format=format, color=color, overlay=overlay,
                     opacity=opacity, batch_size=batch_size, resize=resize)
    suffixes = [FORMATS[format]] + [COLOR_SUFFIX] * color + [OVERLAY_SUFFIX] * overlay
    todo = [(i, job) for i, job in enumerate(jobs) if not output_exists(job, suffixes)]
    resumed = len(jobs) - len(todo)
    options = {"format": format, "color": color, "overlay": overlay, "opacity": opacity,
               "batch_size": batch_size, "resize": resize, "max_pixels": max_pixels,
               "scale": parse_scale(scale) if isinstance(scale, str) else scale}

    info: dict[str, Any] = {"address": address}
    if not todo:  # everything was written by an earlier run: no cluster needed
        return RayPredictResult([], resumed, [], info, time.perf_counter() - start)
    with connect(address) as ray:
        plan = plan_actors(ray, workers, threads)
        shipped = ship_model(ray, model)
        ds = _dataset(ray, todo, plan, batch_size, {
            "model": shipped, "options": options,
            **_engine_kwargs(plan, device, trust_checkpoint, trust_package)})
        try:
            collected = collect(ds, len(todo), desc="predict", progress=progress,
                                on_record=partial(_check_record, skip_bad))
        finally:
            release_model(ray, shipped)
    info.update(plan.to_json(), model=shipped.to_json(), workers_used=collected.workers_json(),
                repeats_ignored=collected.repeats, **collected.rates())
    return _result(collected, resumed, info, start)


def _dataset(ray: Any, todo: list[tuple[int, Any]], plan: ActorPlan, batch_size: int,
             worker_kwargs: dict[str, Any]) -> Any:
    """One row per image still to do, mapped in batches through the plan's pool of
    `_PredictWorker` actors, each built with `worker_kwargs` (its `device` included)."""
    per_task = images_per_task(len(todo), batch_size, plan.workers)
    rows = [{"index": i, "job": pickle.dumps(job)} for i, job in todo]
    return rows_dataset(ray, rows, per_task).map_batches(
        _PredictWorker, batch_size=per_task, fn_constructor_kwargs=worker_kwargs,
        **map_options(plan, worker_kwargs["device"]))


def _check_record(skip_bad: bool, _: int, record: dict[str, Any]) -> None:
    """Stop the job at an actor's error, or at a bad image unless `skip_bad`."""
    if "error" in record:
        raise OcrnetError(record["error"])
    if "skipped" in record and not skip_bad:
        raise BadFileError(record["image"], record["skipped"])


def _result(collected: Collected, resumed: int, info: dict[str, Any],
            start: float) -> RayPredictResult:
    """The run's result: the actors' records in input order, the skipped images listed."""
    records = collected.records
    images = [records[i] for i in sorted(records)]
    skipped = [SkippedFile(r["image"], r["skipped"]) for r in images if "skipped" in r]
    return RayPredictResult(images, resumed, skipped, info, time.perf_counter() - start)


def _engine_kwargs(plan: Any, device: str, trust_checkpoint: bool,
                   trust_package: bool) -> dict[str, Any]:
    return {"threads": plan.threads, "pinning": plan.pinning, "device": device,
            "trust_checkpoint": trust_checkpoint, "trust_package": trust_package,
            "cwd": os.getcwd()}


class _PredictWorker(EngineWorker):
    """One actor: the model opened once; each call predicts a few rows' images."""

    def __init__(self, model: ShippedModel, *, options: dict[str, Any],
                 **engine_kwargs: Any) -> None:
        super().__init__(model, **engine_kwargs)
        self.options = dict(options)
        if self.error is None:
            self.options["scale"] = self.engine.default_scale(self.options["scale"])

    def run(self, batch: dict[str, Any]) -> tuple[list[int], list[dict[str, Any]]]:
        items = [(int(i), pickle.loads(blob)) for i, blob in zip(batch["index"], batch["job"],
                                                                 strict=True)]
        index_of = {str(job.image): i for i, job in items}
        indices: list[int] = []
        records: list[dict[str, Any]] = []
        try:
            # One decode thread: the actor's CPUs belong to its engine.
            for result in predict_jobs(self.engine, [job for _, job in items], workers=1,
                                       skip_bad=True, **self.options):
                indices.append(index_of[str(result["image"])])
                records.append(dict(result))
        except OcrnetError as err:  # e.g. --out not writable: the driver stops with this line
            done = set(indices)
            for i, job in items:
                if i not in done:
                    indices.append(i)
                    records.append({"image": str(job.image), "error": str(err)})
        return indices, records


def output_exists(job: Any, suffixes: list[str]) -> bool:
    """True when every output of `job` is already a file (written whole: see fileio)."""
    return all(Path(f"{job.out_base}{s}").is_file() for s in suffixes)
