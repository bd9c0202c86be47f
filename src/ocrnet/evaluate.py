"""`ocrnet eval`: a model (any engine) or saved predictions, scored on Cityscapes.

The model path is mmseg's test loop: preprocess (`ocrnet.data.transforms`), infer at the resized
shape, bring the prediction back to the label's original shape, accumulate one confusion matrix.
With `resize="logits"` (the default, mmseg-exact) the logits are resized bilinearly and then
argmax'ed; `resize="labels"` resizes the engine's labels by nearest neighbour instead (cheaper,
for engines that output labels only). When no resize is needed (Cityscapes at 2048x1024) both
are the same and the engine's labels are used directly.

The result record is `ocrnet.eval_result`; pairing and scoring saved predictions is
`ocrnet.eval_predictions`. Both are re-exported here, where callers have always found them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from ocrnet import defaults
from ocrnet.data.cityscapes import discover
from ocrnet.data.images import DEFAULT_MAX_PIXELS
from ocrnet.data.transforms import Scale
from ocrnet.engines.base import Engine
from ocrnet.errors import check_int
from ocrnet.eval_predictions import pair_predictions, predictions_result, score_pair
from ocrnet.eval_result import EvalResult, model_result
from ocrnet.work.kernels import PairKernel, ScoreKernel
from ocrnet.work.local import Executor, LocalExecutor
from ocrnet.work.modes import Mode
from ocrnet.work.plan import (
    EvalOptions,
    EvalPlan,
    check_run_options,
    check_streams,
    limited,
    prediction_dir,
)
from ocrnet.work.tally import Tally

# Re-exported: `from ocrnet.evaluate import EvalResult` etc. predate the split into modules.
__all__ = ["EvalResult", "evaluate", "evaluate_predictions", "model_result", "pair_predictions",
           "predictions_result", "score_pair"]


def evaluate(
    model: Engine | str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    split: str = defaults.SPLIT,
    limit: int | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    *,
    scale: Scale | None = None,
    device: str = defaults.DEVICE,
    save_predictions: str | os.PathLike[str] | None = None,
    skip_bad: bool = False,
    resize: str = defaults.RESIZE,
    workers: int | None = None,
    prefetch: int | None = None,
    progress: bool = True,
    trust_checkpoint: bool = False,
    trust_package: bool = False,
    threads: int | None = None,
    ray: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    mode: str | Mode = defaults.MODE,
    crop: Any = None,
    stride: Any = None,
    ratios: Sequence[float] | None = None,
    flip: bool = False,
    calibration: bool = False,
    streams: int | None = None,
) -> EvalResult:
    """Score a model on a Cityscapes split.

    `model` is an open `Engine` (left open) or a checkpoint / engine package path (opened on
    `device` with `ocrnet.engines.open_model`, closed afterwards; `trust_*` as there). `scale`:
    the keep-ratio resize limit (default: a static package's own input size, else mmseg's
    2048x1024). `save_predictions` writes `<stem>_pred_labelIds.png` there. `skip_bad`: skip and
    list unreadable or inconsistent samples instead of raising `DataError`. `threads`: the
    engine's inference threads. `ray`: on a Ray cluster (`"local"`, `"auto"` or an address;
    `workers` engine actors of `threads` each), see `ocrnet.jobs`; identical metrics.
    `max_pixels`: bigger images or labels are refused before decoding (a `BadFileError`).
    `mode` (`crop`, `stride`, `ratios`, `flip`): `ocrnet.work.modes`. `calibration`:
    `result.extra["calibration"]` (`ocrnet.calibration`). `streams`: images in flight through
    the engine (default: 2 for OpenVINO packages on 2+ cores, else 1; see
    `ocrnet.engines.stream_count`); the metrics are the same whatever it is.
    """
    check_run_options(resize, batch_size)
    check_streams(streams, ray)
    plan = EvalPlan(limited(discover(data_root, split), limit), EvalOptions(
        scale, resize, batch_size, max_pixels, prediction_dir(save_predictions),
        Mode.parse(mode, crop=crop, stride=stride, ratios=ratios, flip=flip), calibration),
        skip_bad)
    executor = _executor(ray, workers, threads, device, trust_checkpoint, trust_package,
                         prefetch, model, streams)
    tally = Tally(skip_bad)
    start = time.perf_counter()
    info = executor.run(model, ScoreKernel(plan.options), plan.samples, desc="eval",
                        progress=progress, on_record=tally.add)
    result = _scored(tally, info, plan, str(model), data_root, split, start)
    _extras(result, info, plan.options.mode, tally if calibration else None)
    return result


def _scored(tally: Tally, info: dict[str, Any], plan: EvalPlan, model: str,
            data_root: str | os.PathLike[str], split: str, start: float) -> EvalResult:
    """The run's `EvalResult` from its tally and what the kernel's setup chose."""
    scored = tally.scored_in_order()
    scale_used = info.get("scale", plan.options.scale)
    return model_result(
        tally.confusion, tally.num_images, info.get("model", model), data_root, split,
        skipped=tally.skipped_in_order(), skip_bad=plan.skip_bad,
        scale=tuple(scale_used) if isinstance(scale_used, list) else scale_used,
        scale_source=info.get("scale_source", "given"), resize=plan.options.resize,
        seconds=time.perf_counter() - start, per_image=[cm.matrix for _, cm in scored],
        image_ids=[plan.samples[i].stem for i, _ in scored],
        empty_labels=[str(plan.samples[i].label) for i in tally.empty()])


def _extras(result: EvalResult, info: dict[str, Any], mode: Mode, tally: Tally | None) -> None:
    """The Ray block, the mode (as the kernel completed it) and, when asked, the calibration
    block: None where some image had no confidence (a labels-only model)."""
    if "ray" in info:
        result.extra["ray"] = info["ray"]
    result.extra.update({k: info[k] for k in ("mode", "crop", "stride", "ratios", "flip")
                         if k in info} or mode.to_dict())
    if tally is not None:
        cal = tally.calibration
        result.extra["calibration"] = None if cal is None or tally.uncalibrated \
            else cal.to_dict()


def _executor(ray: str | None, workers: int | None, threads: int | None, device: str,
              trust_checkpoint: bool, trust_package: bool, prefetch: int | None,
              model: Engine | str | os.PathLike[str] | None,
              streams: int | None = None) -> Executor:
    """This process, or the Ray cluster at `ray` (which needs a model path, not an engine)."""
    if ray is None:
        return LocalExecutor(device, trust_checkpoint, trust_package, threads, workers,
                             prefetch, streams)
    from ocrnet.jobs.executor import RayExecutor

    executor = RayExecutor(ray, workers=workers, threads=threads, device=device,
                           trust_checkpoint=trust_checkpoint, trust_package=trust_package)
    executor.check(model, "eval")
    return executor


# --- scoring saved predictions ---------------------------------------------------------------
def evaluate_predictions(
    predictions: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    split: str = defaults.SPLIT,
    limit: int | None = None,
    *,
    skip_bad: bool = False,
    workers: int | None = None,
    progress: bool = True,
    ray: str | None = None,
) -> EvalResult:
    """Score saved labelIds PNGs against a split, matched as cityscapesscripts matches them.

    Every ground truth `<city>_<seq>_<frame>` needs exactly one `<city>_<seq>_<frame>*.png`
    anywhere under `predictions`. Predicted ids are official labelIds; ids of classes outside
    the 19 evaluated count as misses, ids that are not Cityscapes labels are an error.
    `ray`: score on a Ray cluster (`workers` tasks at a time), see `ocrnet.jobs`.
    """
    if workers is not None:
        check_int(workers, "workers")
    samples = limited(discover(data_root, split), limit)
    pairs, unmatched = pair_predictions(samples, predictions, skip_bad=skip_bad)
    executor = _executor(ray, workers, None, defaults.DEVICE, False, False, None, None)
    tally = Tally(skip_bad)
    start = time.perf_counter()
    info: dict[str, Any] = {}
    if pairs:
        info = executor.run(None, PairKernel(), pairs, desc="eval", progress=progress,
                            on_record=tally.add)
    result = predictions_result(
        tally.confusion, tally.num_images, predictions, data_root, split,
        skipped=unmatched + tally.skipped_in_order(), skip_bad=skip_bad,
        seconds=time.perf_counter() - start, pairs=pairs,
        empty_labels=[str(pairs[i][0].label) for i in tally.empty()])
    if ray is not None:
        result.extra["ray"] = info.get("ray", {"address": ray})
    return result
