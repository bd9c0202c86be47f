"""`ocrnet predict`: image files, folders or globs -> label PNGs (and colour masks, overlays).

The verb is plan -> executor -> tally (`ocrnet.work`): the plan finds the images, their output
names and checks the options; the run record in `out_dir` says what an earlier run into the same
folder already did (resume) or refuses a run of another model or options; the executor (this
process, or Ray with `ray=`) runs `ocrnet.work.kernels.PredictKernel`, eval's own decode ->
preprocess -> engine path, and writes every file atomically; the tally puts the records back in
input order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ocrnet import defaults
from ocrnet.data.images import DEFAULT_MAX_PIXELS
from ocrnet.data.loader import SkippedFile
from ocrnet.data.transforms import Scale
from ocrnet.engines.base import Engine
from ocrnet.work.formats import (
    COLOR_SUFFIX,
    FORMATS,
    OVERLAY_SUFFIX,
    RENDERINGS,
    encode_prediction,
    prediction_summary,
)
from ocrnet.work.kernels import PredictKernel
from ocrnet.work.local import LocalExecutor
from ocrnet.work.modes import Mode
from ocrnet.work.plan import (
    check_streams,
    find_images,
    output_name,
    plan_predict,
    predict_options,
)
from ocrnet.work.record import model_identity, resume, run_identity
from ocrnet.work.tally import Tally

# Re-exported: serve and scripts import these from here.
__all__ = ["COLOR_SUFFIX", "FORMATS", "OVERLAY_SUFFIX", "RENDERINGS", "PredictResult",
           "encode_prediction", "find_images", "output_name", "predict", "predict_run",
           "prediction_summary"]


@dataclass
class PredictResult:
    """What a predict run did: `images` as `predict` returns them (written this run, or
    skipped with `skip_bad`), in input order; `resumed` images were already in `out_dir`."""

    images: list[dict[str, Any]]
    resumed: int
    skipped: list[SkippedFile]
    ray: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    num_classes: int | None = None  # what the model predicts, where its metadata says

    @property
    def written(self) -> int:
        return sum(1 for r in self.images if "skipped" not in r)

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "written": self.written, "resumed": self.resumed,
                "skipped": [s.to_json() for s in self.skipped], "seconds": round(self.seconds, 3),
                "ray": self.ray}


def predict(
    model_or_engine: Engine | str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    format: str = defaults.PREDICT_FORMAT,  # shadows the builtin: the CLI option is --format
    color: bool = False,
    overlay: bool = False,
    opacity: float = defaults.OPACITY,
    scale: Scale | str | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    device: str = defaults.DEVICE,
    resize: str = defaults.RESIZE,
    workers: int | None = None,
    progress: bool = True,
    trust_checkpoint: bool = False,
    trust_package: bool = False,
    threads: int | None = None,
    skip_bad: bool = False,
    ray: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    mode: str | Mode = defaults.MODE,
    crop: Any = None,
    stride: Any = None,
    ratios: Sequence[float] | None = None,
    flip: bool = False,
    confidence: bool = False,
    streams: int | None = None,
) -> list[dict[str, Any]]:
    """Predict every image in `inputs` and write PNGs of its original size to `out_dir`.

    `model_or_engine` is an open `Engine` (left open) or a checkpoint / ONNX / engine package
    path (opened on `device`, closed afterwards). Per image `<name>_labelTrainIds.png` (train
    ids, `format="trainids"`) or `<name>_pred_labelIds.png` (official labelIds, what the
    Cityscapes benchmark accepts, `format="cityscapes"`), plus `<name>_color.png` (palette) and
    `<name>_overlay.png` (blended at `opacity`) when asked. `scale` is the keep-ratio resize
    limit (default: a static package's own input size, else 2048x1024, as eval; `trust_*` as
    `ocrnet.engines.open_model`); `resize` as eval's ("logits": exact, "labels":
    nearest). Returns one dict per image: `image`, `height`, `width` and the written paths;
    with `skip_bad` an unreadable image is `{"image": path, "skipped": reason}` instead of an
    error. `threads`: the engine's inference threads; `streams`: images in flight through it
    (`ocrnet.engines.stream_count`; the same bytes whatever it is). `ray`: on a Ray cluster
    (`"local"`, `"auto"` or an address; `workers` is then the number of engine actors, `threads`
    each one's threads), see `ocrnet.jobs`. `max_pixels`: an image whose header claims more
    pixels is refused before decoding (the overlay's re-read too).

    `out_dir` keeps a run record (`ocrnet-run.json`): a rerun with the same model and options
    skips the images already done (`predict_run(...).resumed`); another model or options, or
    files no record owns, are refused in one line unless `overwrite`, which replaces this
    run's outputs (and nothing else in the folder). `mode` (`crop`, `stride`, `ratios`,
    `flip`): `ocrnet.work.modes`. `confidence`: also `<name>_confidence.png`, 255 x max softmax.
    """
    return predict_run(
        model_or_engine, inputs, out_dir, format=format, color=color, overlay=overlay,
        opacity=opacity, scale=scale, batch_size=batch_size, device=device, resize=resize,
        workers=workers, progress=progress, trust_checkpoint=trust_checkpoint,
        trust_package=trust_package, threads=threads, skip_bad=skip_bad, ray=ray,
        max_pixels=max_pixels, overwrite=overwrite, mode=mode, crop=crop, stride=stride,
        ratios=ratios, flip=flip, confidence=confidence, streams=streams).images


def predict_run(
    model_or_engine: Engine | str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    format: str = defaults.PREDICT_FORMAT,
    color: bool = False,
    overlay: bool = False,
    opacity: float = defaults.OPACITY,
    scale: Scale | str | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    device: str = defaults.DEVICE,
    resize: str = defaults.RESIZE,
    workers: int | None = None,
    progress: bool = True,
    trust_checkpoint: bool = False,
    trust_package: bool = False,
    threads: int | None = None,
    skip_bad: bool = False,
    ray: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    mode: str | Mode = defaults.MODE,
    crop: Any = None,
    stride: Any = None,
    ratios: Sequence[float] | None = None,
    flip: bool = False,
    confidence: bool = False,
    streams: int | None = None,
) -> PredictResult:
    """`predict` with the whole account: images written, resumed, skipped, the Ray block."""
    start = time.perf_counter()
    options = predict_options(format=format, color=color, overlay=overlay, opacity=opacity,
                              scale=scale, resize=resize, batch_size=batch_size,
                              max_pixels=max_pixels, confidence=confidence,
                              mode=Mode.parse(mode, crop=crop, stride=stride, ratios=ratios,
                                              flip=flip))
    check_streams(streams, ray)
    plan = plan_predict(inputs, out_dir, options, skip_bad=skip_bad)
    if ray is not None:
        from ocrnet.jobs.executor import RayExecutor

        executor: Any = RayExecutor(ray, workers=workers, threads=threads, device=device,
                                    trust_checkpoint=trust_checkpoint,
                                    trust_package=trust_package)
        executor.check(model_or_engine, "predict")
    else:
        executor = LocalExecutor(device, trust_checkpoint, trust_package, threads, workers,
                                 streams=streams)
    model = model_identity(model_or_engine)
    done = resume(plan, model, run_identity(model, options, device), overwrite=overwrite)
    tally = Tally(skip_bad)
    got: dict[str, Any] = {"ray": {"address": ray}} if ray is not None else {}
    if done.todo:  # everything was written by an earlier run: no engine needed
        got = executor.run(model_or_engine, PredictKernel(options),
                           [plan.items[i] for i in done.todo], desc="predict",
                           progress=progress, on_record=tally.add)
    return PredictResult(tally.records_in_order(), done.resumed, tally.skipped_in_order(),
                         got.get("ray", {}), time.perf_counter() - start,
                         got.get("num_classes"))
