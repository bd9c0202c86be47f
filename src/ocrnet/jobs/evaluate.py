"""`eval --ray`: a model (or saved predictions) scored on a Ray cluster, the same JSON as
in-process.

Each image's confusion matrix (19x19 int64 plus the per-class misses, from
`ocrnet.metrics.image_confusion`) is computed where the image is, by `ocrnet.evaluate.score_batch`
in an actor that opened the model once (or `score_pair` for saved predictions); the driver adds
the integer counts, once per image even if Ray retried a task, and builds the result with
`ocrnet.eval_result.model_result`, the function in-process eval builds it with. Every number of the
result is therefore identical to an in-process run; only `seconds` and the added `ray` block
(actors, threads, nodes) differ.
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

import numpy as np

from ocrnet import defaults
from ocrnet.data.cityscapes import CLASSES, Sample, discover
from ocrnet.data.images import DEFAULT_MAX_PIXELS
from ocrnet.data.loader import Loader, SkippedFile
from ocrnet.data.transforms import Scale
from ocrnet.engines.base import Engine
from ocrnet.errors import BadFileError, OcrnetError
from ocrnet.eval_predictions import pair_predictions, predictions_result, score_pair
from ocrnet.eval_result import EvalResult, model_result
from ocrnet.evaluate import (
    _check_classes,
    _limited,
    _prediction_dir,
    check_options,
    scale_source,
    score_batch,
)
from ocrnet.jobs.cluster import connect, images_per_task, map_options, plan_actors, rows_dataset
from ocrnet.jobs.records import Collected, collect, encode_records
from ocrnet.jobs.shipping import ShippedModel, release_model, ship_model
from ocrnet.jobs.worker import EngineWorker, follow_driver
from ocrnet.metrics import ConfusionMatrix

_PAIRS_PER_TASK = 8


def evaluate_on_ray(
    model: Engine | str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    split: str = defaults.SPLIT,
    limit: int | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    *,
    address: str = "local",
    scale: Scale | None = None,
    device: str = defaults.DEVICE,
    save_predictions: str | os.PathLike[str] | None = None,
    skip_bad: bool = False,
    resize: str = defaults.RESIZE,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    trust_checkpoint: bool = False,
    trust_package: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> EvalResult:
    """`ocrnet.evaluate.evaluate` on the Ray cluster at `address` (`local`, `auto`, HOST:PORT):
    `workers` engine actors (default one per node) of `threads` threads each (default: the
    node's cores). The data root (and `save_predictions`) must be at the same path on every
    node (a shared mount); the model is shipped."""
    if isinstance(model, Engine):
        raise OcrnetError("eval on Ray needs a model path (package folder, .onnx or .pth): an "
                          "open engine cannot travel to other machines")
    check_options(resize, batch_size)
    samples = _limited(discover(data_root, split), limit)
    out_dir = _prediction_dir(save_predictions)
    start = time.perf_counter()
    with connect(address) as ray:
        plan = plan_actors(ray, workers, threads)
        shipped = ship_model(ray, model)
        per_task = images_per_task(len(samples), batch_size, plan.workers)
        rows = [{"index": i, "sample": pickle.dumps(s)} for i, s in enumerate(samples)]
        ds = rows_dataset(ray, rows, per_task).map_batches(
            _EvalWorker, batch_size=per_task,
            fn_constructor_kwargs={
                "model": shipped, "scale": scale, "resize": resize, "batch_size": batch_size,
                "out_dir": out_dir, "max_pixels": max_pixels, "threads": plan.threads,
                "pinning": plan.pinning, "device": device,
                "trust_checkpoint": trust_checkpoint, "trust_package": trust_package,
                "cwd": os.getcwd()},
            **map_options(plan, device))
        tally = _Tally(skip_bad)
        try:
            collected = collect(ds, len(samples), desc="eval", progress=progress,
                                on_record=tally.add)
        finally:
            release_model(ray, shipped)
    result = _tally_result(tally, collected, samples, str(model), data_root, split,
                           skip_bad=skip_bad, scale=scale, resize=resize, start=start)
    result.extra["ray"] = {"address": address, **plan.to_json(), "model": shipped.to_json(),
                           "workers_used": collected.workers_json(),
                           "repeats_ignored": collected.repeats, **collected.rates()}
    return result


def _tally_result(tally: _Tally, collected: Collected, samples: list[Sample], model: str,
                  data_root: str | os.PathLike[str], split: str, *, skip_bad: bool,
                  scale: Scale | None, resize: str, start: float) -> EvalResult:
    """The run's `EvalResult` from the driver's tally, as in-process eval builds it; the scale
    and its source are what the actors reported (each opened the model and chose them)."""
    first = collected.workers_json()[0] if collected.workers else {}
    got_scale = first.get("scale", scale)
    scored = tally.scored_in_order()
    return model_result(
        tally.confusion, tally.num_images, model, data_root, split,
        skipped=tally.skipped_in_order(), skip_bad=skip_bad,
        scale=tuple(got_scale) if isinstance(got_scale, list) else got_scale,
        scale_source=first.get("scale_source", "given"), resize=resize,
        seconds=time.perf_counter() - start,
        per_image=[cm.matrix for _, cm in scored],
        image_ids=[samples[i].stem for i, _ in scored],
        # A label of only ignored pixels is one whose image counted no pixel at all.
        empty_labels=[str(samples[i].label) for i, cm in scored if cm.total == 0])


def evaluate_predictions_on_ray(
    predictions: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    split: str = defaults.SPLIT,
    limit: int | None = None,
    *,
    address: str = "local",
    skip_bad: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """`ocrnet.evaluate.evaluate_predictions` with the files read and scored by Ray tasks
    (`workers` at a time, default one per cluster CPU); predictions are matched on the driver."""
    samples = _limited(discover(data_root, split), limit)
    pairs, unmatched = pair_predictions(samples, predictions, skip_bad=skip_bad)
    start = time.perf_counter()
    tally = _Tally(skip_bad)
    info: dict[str, Any] = {"address": address}
    with connect(address) as ray:
        if pairs:
            rows = [{"index": i, "pair": pickle.dumps(p)} for i, p in enumerate(pairs)]
            opts: dict[str, Any] = {"batch_size": _PAIRS_PER_TASK, "batch_format": "numpy",
                                    "num_cpus": 1, "fn_kwargs": {"cwd": os.getcwd()}}
            if workers:
                opts["concurrency"] = workers
            ds = rows_dataset(ray, rows, _PAIRS_PER_TASK).map_batches(_score_pairs, **opts)
            collected = collect(ds, len(pairs), desc="eval", progress=progress,
                                on_record=tally.add)
            info.update(workers=workers, workers_used=collected.workers_json(),
                        repeats_ignored=collected.repeats)
    result = predictions_result(
        tally.confusion, tally.num_images, predictions, data_root, split,
        skipped=unmatched + tally.skipped_in_order(), skip_bad=skip_bad,
        seconds=time.perf_counter() - start, pairs=pairs,
        empty_labels=[str(pairs[i][0].label) for i, cm in tally.scored_in_order()
                      if not cm.matrix.any()])
    result.extra["ray"] = info
    return result


class _Tally:
    """The driver's sum: per-image counts added once each; bad files kept by index."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.confusion = ConfusionMatrix(len(CLASSES))
        self.num_images = 0
        self.skipped: dict[int, SkippedFile] = {}
        self.scored: dict[int, ConfusionMatrix] = {}

    def add(self, index: int, record: dict[str, Any]) -> str | None:
        if "error" in record:
            raise OcrnetError(record["error"])
        if "skipped" in record:
            if not self.skip_bad:
                raise BadFileError(record["path"], record["skipped"])
            self.skipped[index] = SkippedFile(record["path"], record["skipped"])
            return None
        image_cm = _from_record(record)
        self.scored[index] = image_cm
        self.confusion.merge(image_cm)
        self.num_images += 1
        miou = self.confusion.results().miou
        return "mIoU " + ("-" if np.isnan(miou) else f"{miou * 100:.2f}")

    def skipped_in_order(self) -> list[SkippedFile]:
        return [self.skipped[i] for i in sorted(self.skipped)]

    def scored_in_order(self) -> list[tuple[int, ConfusionMatrix]]:
        return sorted(self.scored.items())


def _to_record(cm: ConfusionMatrix) -> dict[str, Any]:
    return {"matrix": cm.matrix.ravel().tolist(), "missed": cm.missed.tolist()}


def _from_record(record: dict[str, Any]) -> ConfusionMatrix:
    n = len(CLASSES)
    cm = ConfusionMatrix(n)
    cm.matrix[:] = np.asarray(record["matrix"], dtype=np.int64).reshape(n, n)
    cm.missed[:] = np.asarray(record["missed"], dtype=np.int64)
    return cm


class _EvalWorker(EngineWorker):
    """One actor: the model opened once; each call scores a few rows' images."""

    def __init__(self, model: ShippedModel, *, scale: Scale | None, resize: str,
                 batch_size: int, out_dir: Any, max_pixels: int, **engine_kwargs: Any) -> None:
        super().__init__(model, **engine_kwargs)
        self.resize, self.batch_size, self.out_dir = resize, batch_size, out_dir
        self.max_pixels = max_pixels
        if self.error is None:
            try:  # as in-process eval: a model of other classes is refused
                _check_classes(self.engine, model.source)
            except OcrnetError as err:
                self.error = str(err)
        if self.error is not None:
            return
        # As in-process eval: a static package's own size unless a scale is given.
        source = scale_source(self.engine, scale)
        self.scale = self.engine.default_scale(scale)
        self.worker.update(scale=list(self.scale) if isinstance(self.scale, tuple)
                           else self.scale, scale_source=source)

    def run(self, batch: dict[str, Any]) -> tuple[list[int], list[dict[str, Any]]]:
        items = [(int(i), pickle.loads(blob)) for i, blob in zip(batch["index"], batch["sample"],
                                                                 strict=True)]
        index_of = {sample.stem: i for i, sample in items}
        indices: list[int] = []
        records: list[dict[str, Any]] = []
        # One decode thread: the actor's CPUs belong to its engine.
        loader = Loader([s for _, s in items], batch_size=self.batch_size, scale=self.scale,
                        workers=1, skip_bad=True, max_pixels=self.max_pixels)
        try:
            for loaded in loader:
                for sample, cm in zip(loaded.samples,
                                      score_batch(self.engine, loaded, self.resize, self.out_dir),
                                      strict=True):
                    indices.append(index_of[sample.stem])
                    records.append(_to_record(cm))
        except OcrnetError as err:  # not a bad file: stop the job with this line
            done = set(indices)
            for i, _ in items:
                if i not in done:
                    indices.append(i)
                    records.append({"error": str(err)})
            return indices, records
        # The loader skips in sample order: the unscored samples, in order, are its skips.
        done = set(indices)
        missing = [i for i, _ in items if i not in done]
        for i, skipped in zip(missing, loader.skipped, strict=True):
            indices.append(i)
            records.append({"path": skipped.path, "skipped": skipped.reason})
        return indices, records


def _score_pairs(batch: dict[str, Any], cwd: str | None = None) -> dict[str, Any]:
    """A Ray task: score saved predictions against their labels (`score_pair`)."""
    import ray

    follow_driver(cwd)
    worker = {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    indices: list[int] = []
    records: list[dict[str, Any]] = []
    for i, blob in zip(batch["index"], batch["pair"], strict=True):
        indices.append(int(i))
        try:
            records.append({**_to_record(score_pair(pickle.loads(blob))), "worker": worker})
        except BadFileError as err:
            records.append({"path": str(err.path), "skipped": err.reason, "worker": worker})
    return encode_records(indices, records)
