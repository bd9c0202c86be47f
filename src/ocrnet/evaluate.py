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

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocrnet import defaults
from ocrnet.data.cityscapes import CLASSES, PRED_SUFFIX, TRAIN_TO_LABEL, Sample, discover
from ocrnet.data.images import DEFAULT_MAX_PIXELS
from ocrnet.data.loader import BadFileError, Batch, Loader, SkippedFile, bounded_map
from ocrnet.data.transforms import Scale
from ocrnet.engines import opened_engine
from ocrnet.engines.base import RESIZE_MODES, Engine
from ocrnet.errors import DataError, OcrnetError, check_int
from ocrnet.eval_predictions import pair_predictions, predictions_result, score_pair
from ocrnet.eval_result import EvalResult, model_result
from ocrnet.fileio import atomic_write_bytes, prepare_folder
from ocrnet.metrics import ConfusionMatrix, image_confusion
from ocrnet.progress import progress_bar

# Re-exported: `from ocrnet.evaluate import EvalResult` etc. predate the split into modules.
__all__ = ["EvalResult", "evaluate", "evaluate_predictions", "model_result", "pair_predictions",
           "predictions_result", "score_batch", "score_pair"]


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
) -> EvalResult:
    """Score a model on a Cityscapes split.

    `model` is an open `Engine` (left open) or a checkpoint / engine package path (opened on
    `device` with `ocrnet.engines.open_model`, closed afterwards; `trust_checkpoint` /
    `trust_package` as there). `scale` is the keep-ratio resize limit (default: a static
    package's own input size, else 2048x1024, mmseg's). `save_predictions` writes
    `<stem>_pred_labelIds.png` there (official labelIds). With `skip_bad` unreadable or
    inconsistent samples are skipped and listed in the result instead of raising `DataError`.
    `threads`: the engine's inference threads. `ray`: run on a Ray cluster (`"local"`, `"auto"`
    or an address; `workers` is then the number of engine actors, `threads` each one's
    threads), see `ocrnet.jobs.evaluate`; the metrics are identical to an in-process run.
    `max_pixels`: an image or label whose header claims more pixels is refused before decoding
    (a `BadFileError`, which `skip_bad` skips).
    """
    if ray is not None:
        from ocrnet.jobs.evaluate import evaluate_on_ray

        return evaluate_on_ray(
            model, data_root, split, limit, batch_size, address=ray, scale=scale,
            device=device, save_predictions=save_predictions, skip_bad=skip_bad, resize=resize,
            workers=workers, threads=threads, progress=progress,
            trust_checkpoint=trust_checkpoint, trust_package=trust_package, max_pixels=max_pixels)
    check_options(resize, batch_size)
    samples = _limited(discover(data_root, split), limit)
    out_dir = _prediction_dir(save_predictions)
    with opened_engine(model, device=device, trust_checkpoint=trust_checkpoint,
                       trust_package=trust_package, threads=threads) as (engine, name):
        _check_classes(engine, name)
        source, scale = scale_source(engine, scale), engine.default_scale(scale)
        loader = Loader(samples, batch_size=batch_size, scale=scale, workers=workers,
                        prefetch=prefetch, skip_bad=skip_bad, max_pixels=max_pixels)
        start = time.perf_counter()
        run = _score_loader(engine, loader, resize, out_dir, progress, len(samples))
    return model_result(run.confusion, run.num_images, name, data_root, split,
                        skipped=loader.skipped, skip_bad=skip_bad, scale=scale,
                        scale_source=source, resize=resize,
                        seconds=time.perf_counter() - start, per_image=run.per_image,
                        image_ids=run.image_ids, empty_labels=loader.empty_labels)


def check_options(resize: str, batch_size: int) -> None:
    """Refuse a bad `resize` or `batch_size` before any work (in-process and on Ray)."""
    if resize not in RESIZE_MODES:
        raise OcrnetError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
    if batch_size < 1:
        raise OcrnetError(f"batch size must be a positive number of images, got {batch_size}")


def scale_source(engine: Engine, scale: Scale | None) -> str:
    """Where the scale a run uses comes from, for its JSON: as given, a static package's own
    input size, or mmseg's default (`Engine.default_scale` picks the same way)."""
    if scale is not None:
        return "given"
    return "package input" if engine.native_scale else "mmseg default"


@dataclass
class _Scores:
    """What scoring a loader's images gathered, in sample order."""

    confusion: ConfusionMatrix
    num_images: int = 0
    per_image: list[np.ndarray] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)


def _score_loader(engine: Engine, loader: Loader, resize: str, out_dir: Path | None,
                  progress: bool, total: int) -> _Scores:
    """Score every batch of `loader` (`score_batch`) under a progress bar of `total` images."""
    run = _Scores(ConfusionMatrix(len(CLASSES)))
    seen_skipped = 0
    with progress_bar(total, progress, "eval") as bar:
        for batch in loader:
            for image_cm, sample in zip(score_batch(engine, batch, resize, out_dir),
                                        batch.samples, strict=True):
                run.confusion.merge(image_cm)
                run.per_image.append(image_cm.matrix)
                run.image_ids.append(sample.stem)
            run.num_images += len(batch)
            # Skipped samples count as done, so the bar and its ETA still reach the end.
            _advance(bar, len(batch) + len(loader.skipped) - seen_skipped, run.confusion)
            seen_skipped = len(loader.skipped)
        if len(loader.skipped) > seen_skipped:  # bad samples after the last batch
            _advance(bar, len(loader.skipped) - seen_skipped, run.confusion)
    return run


def score_batch(engine: Engine, batch: Batch, resize: str,
                out_dir: Path | None = None) -> list[ConfusionMatrix]:
    """Infer one loader batch and score each image on its own (`image_confusion`), writing
    its labelIds PNG to `out_dir` if given: the step in-process eval and every eval actor of
    `eval --ray` run, so their summed matrices are identical."""
    preds = engine.labels_at(batch.images, batch.sizes, resize)
    out = []
    for pred, label, sample in zip(preds, batch.labels, batch.samples, strict=True):
        out.append(image_confusion(pred, label, len(CLASSES)))
        if out_dir is not None:
            _write_png(out_dir / f"{sample.stem}{PRED_SUFFIX}", TRAIN_TO_LABEL[pred])
    return out


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
    `ray`: score on a Ray cluster (`workers` tasks at a time), see `ocrnet.jobs.evaluate`.
    """
    if ray is not None:
        from ocrnet.jobs.evaluate import evaluate_predictions_on_ray

        return evaluate_predictions_on_ray(predictions, data_root, split, limit, address=ray,
                                           skip_bad=skip_bad, workers=workers,
                                           progress=progress)
    if workers is not None:
        check_int(workers, "workers")
    samples = _limited(discover(data_root, split), limit)
    pairs, skipped = pair_predictions(samples, predictions, skip_bad=skip_bad)
    empty: list[str] = []

    confusion = ConfusionMatrix(len(CLASSES))
    start = time.perf_counter()
    num_images = 0
    n_workers = workers or min(4, os.cpu_count() or 1)
    results = bounded_map(score_pair, pairs, workers=n_workers, prefetch=2 * n_workers)
    with progress_bar(len(samples), progress, "eval") as bar:
        _advance(bar, len(skipped), confusion)
        for (sample, _), future in zip(pairs, results, strict=True):
            try:
                image_cm = future.result()
            except BadFileError as err:
                if not skip_bad:
                    raise
                skipped.append(SkippedFile(str(err.path), err.reason))
                _advance(bar, 1, confusion)
                continue
            confusion.merge(image_cm)
            if not image_cm.matrix.any():
                empty.append(str(sample.label))
            num_images += 1
            _advance(bar, 1, confusion)
    return predictions_result(confusion, num_images, predictions, data_root, split,
                              skipped=skipped, skip_bad=skip_bad,
                              seconds=time.perf_counter() - start, pairs=pairs,
                              empty_labels=empty)


# --- helpers ---------------------------------------------------------------------------------
def _limited(samples: list[Sample], limit: int | None) -> list[Sample]:
    if limit is None:
        return samples
    if limit < 1:
        raise OcrnetError(f"limit must be a positive number of images, got {limit}")
    return samples[:limit]


def _prediction_dir(path: str | os.PathLike[str] | None) -> Path | None:
    # Checked before the first image, so a bad --save-predictions fails in a second.
    return None if path is None else prepare_folder(path)


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise DataError(f"cannot encode prediction {path}")
    atomic_write_bytes(path, buf.tobytes())  # whole or not at all; OutputError names it


def _check_classes(engine: Engine, name: str) -> None:
    """Refuse a model whose classes are not Cityscapes' 19: its ids mean other classes, and
    scoring them against these labels would print a number that means nothing."""
    meta = engine.metadata
    block = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    n = block.get("num_classes", meta.get("num_classes"))
    if isinstance(n, int) and not isinstance(n, bool) and n != len(CLASSES):
        raise OcrnetError(f"model {name} predicts {n} classes, but the dataset is scored on "
                          f"the {len(CLASSES)} Cityscapes classes; its ids would be scored as "
                          "other classes, so it is not evaluated")


def _advance(bar: Any, n: int, confusion: ConfusionMatrix) -> None:
    """tqdm's own rate and ETA are images/s and time left; the postfix adds the running mIoU."""
    miou = confusion.results().miou
    bar.set_postfix_str("mIoU " + ("-" if math.isnan(miou) else f"{miou * 100:.2f}"),
                        refresh=False)
    bar.update(n)
