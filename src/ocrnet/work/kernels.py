"""One kernel per job kind: over an open engine and a chunk of items, decode -> preprocess ->
engine -> encode PNGs / score confusion matrices, yielding `(index, record)`.

Every executor runs these and nothing else, so an in-process run, a Ray actor and (per image)
`ocrnet serve` produce the same bytes and the same matrices. A kernel is plain picklable data:
`setup(engine, name)` checks the model once and chooses what depends on it (the scale), `run`
works a chunk of `(index, item)` pairs. A record is a dict: an image's result, or
`{"path"|"image", "skipped": reason}` for a file `--skip-bad` passes over.

`batching.batch_labels` is the one step "prepared batch -> labels at each image's original size";
under a test mode (`ocrnet.work.modes`: slide, aug) or with confidence maps the kernels run
`ocrnet.work.modes.batch_predictions` instead, which is `batch_labels` for whole images.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ocrnet.calibration import Calibration
from ocrnet.data.cityscapes import CLASSES, Sample
from ocrnet.data.loader import Batch, Loader, SkippedFile, bounded_map
from ocrnet.data.transforms import Scale, read_image
from ocrnet.engines.base import Engine
from ocrnet.errors import BadFileError, OcrnetError
from ocrnet.fileio import atomic_write_bytes
from ocrnet.metrics import image_confusion
from ocrnet.visualize import encode_png
from ocrnet.work.batching import static_batch
from ocrnet.work.confidence import confidence_png
from ocrnet.work.formats import check_cityscapes_classes, encode_prediction
from ocrnet.work.modes import (
    WHOLE,
    Mode,
    ModePrediction,
    NoLogitsError,
    batch_predictions,
    gives_logits,
)
from ocrnet.work.plan import EvalOptions, PredictItem, PredictOptions
from ocrnet.work.scoring import score_pair

Chunk = Sequence[tuple[int, Any]]
_MAX_PENDING_WRITES = 4  # bounds the finished predictions held in memory while PNGs encode


def run_batch(engine: Engine, batch_size: int) -> int:
    """Images decoded per batch: a static package's own batch size (it runs no other, so any
    other size would only be padded or sliced by `batch_labels`), else `batch_size`."""
    return static_batch(engine) or batch_size


def model_classes(engine: Engine) -> int | None:
    """The number of classes the engine's model predicts, when its metadata says."""
    meta = engine.metadata
    block = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    n = block.get("num_classes", meta.get("num_classes"))
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def scale_source(engine: Engine, scale: Scale | None) -> str:
    """Where the scale a run uses comes from, for its JSON: as given, a static package's own
    input size, or mmseg's default (`Engine.default_scale` picks the same way)."""
    if scale is not None:
        return "given"
    return "package input" if engine.native_scale else "mmseg default"


def loaded_batches(chunk: Sequence[tuple[int, Sample]], *, scale: Scale, batch_size: int,
                   labels: bool, max_pixels: int, workers: int | None = None,
                   prefetch: int | None = None,
                   ) -> Iterator[tuple[list[int], Batch | SkippedFile]]:
    """The chunk's samples decoded and preprocessed (`ocrnet.data.loader.Loader`, bad files
    skipped), as `(indices, batch)` or `([index], skipped file)`, in sample order."""
    loader = Loader([s for _, s in chunk], batch_size=batch_size, scale=scale, workers=workers,
                    prefetch=prefetch, labels=labels, skip_bad=True, max_pixels=max_pixels)
    position = {id(s): n for n, (_, s) in enumerate(chunk)}
    cursor = reported = 0
    for batch in loader:
        at = [position[id(s)] for s in batch.samples]
        # The loader keeps sample order: the positions it passed over before this batch's
        # last one, and not in the batch, are its new skips, in order.
        gaps = [n for n in range(cursor, at[-1] + 1) if n not in set(at)]
        for n, skipped in zip(gaps, loader.skipped[reported:], strict=True):
            yield [chunk[n][0]], skipped
        reported, cursor = len(loader.skipped), at[-1] + 1
        yield [chunk[n][0] for n in at], batch
    for n, skipped in zip(range(cursor, len(chunk)), loader.skipped[reported:], strict=True):
        yield [chunk[n][0]], skipped


Loaded = tuple[list[int], Batch | SkippedFile]


def in_flight(engine: Engine, batches: Iterable[Loaded],
              predict: Callable[[list[int], Batch], list[ModePrediction]],
              ) -> Iterator[tuple[list[int], Batch | SkippedFile, list[ModePrediction] | None]]:
    """Each loaded batch with its predictions (None for a skipped file), in input order.

    An engine opened with K streams (a throughput mode, `ocrnet.engines.stream_count`) predicts
    K batches at once on K threads, each `infer` on a request of its own, so both cores stay
    busy through the layers one request runs on one core and through the resize back; at most
    K batches are held here. The predictions are those of one batch at a time: each image's
    labels depend on its own pixels only."""
    streams = int(engine.metadata.get("streams") or 1)
    if streams <= 1:
        for indices, got in batches:
            yield indices, got, None if isinstance(got, SkippedFile) else predict(indices, got)
        return
    pending: deque[tuple[list[int], Batch | SkippedFile,
                         Future[list[ModePrediction]] | None]] = deque()
    with ThreadPoolExecutor(streams, thread_name_prefix="ocrnet-stream") as pool:
        for indices, got in batches:
            job = None if isinstance(got, SkippedFile) else pool.submit(predict, indices, got)
            pending.append((indices, got, job))
            while len(pending) >= streams:
                indices, got, job = pending.popleft()
                yield indices, got, None if job is None else job.result()
        while pending:
            indices, got, job = pending.popleft()
            yield indices, got, None if job is None else job.result()


@dataclass
class PredictKernel:
    """Label PNGs (and colour masks, overlays) for a chunk of `PredictItem`s, written
    atomically; the record is `{"image", "height", "width", "labels"[, "color", "overlay"]}`."""

    options: PredictOptions
    scale: Scale | None = None  # chosen by `setup` for the engine at hand
    needs_engine: bool = True
    mode: Mode = WHOLE  # the options' mode, checked and completed for the engine by `setup`

    def setup(self, engine: Engine, name: str) -> dict[str, Any]:
        classes = model_classes(engine)
        check_cityscapes_classes(self.options.format, classes, name)
        self.mode, self.scale = mode_setup(engine, self.options.mode, self.options.scale)
        return {"scale": list(self.scale) if isinstance(self.scale, tuple) else self.scale,
                "num_classes": classes, **self.mode.to_dict(default=False)}

    def run(self, engine: Engine | None, chunk: Chunk, *, workers: int | None = None,
            prefetch: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """Decode, infer and write the chunk, yielding each image's record as its PNGs land
        (encoding and writing overlap the next inference on one writer thread)."""
        assert engine is not None and self.scale is not None, "setup() first"
        o = self.options
        items: dict[int, PredictItem] = dict(chunk)
        samples = [(i, Sample(stem=it.out_base.name, city=it.image.parent.name, image=it.image))
                   for i, it in chunk]
        pending: deque[Future[tuple[int, dict[str, Any]]]] = deque()

        def predict(at: list[int], got: Batch) -> list[ModePrediction]:
            return batch_predictions(
                engine, got.images, got.sizes, self.mode, batch=o.batch_size,
                resize=o.resize, confidence=o.confidence,
                original=lambda i: read_image(items[at[i]].image, max_pixels=o.max_pixels))

        loaded = loaded_batches(samples, scale=self.scale,
                                batch_size=run_batch(engine, o.batch_size), labels=False,
                                max_pixels=o.max_pixels, workers=workers, prefetch=prefetch)
        # On an error the pool still finishes the queued writes (complete predictions, each
        # written atomically) before the error propagates.
        with ThreadPoolExecutor(1, thread_name_prefix="ocrnet-write") as writer:
            for indices, got, preds in in_flight(engine, loaded, predict):
                if isinstance(got, SkippedFile):
                    done: Future[tuple[int, dict[str, Any]]] = Future()
                    done.set_result((indices[0], {"image": got.path, "skipped": got.reason}))
                    pending.append(done)
                    continue
                assert preds is not None  # in_flight predicts every batch
                for index, pred in zip(indices, preds, strict=True):
                    pending.append(writer.submit(_write_outputs, index, items[index], pred, o))
                while len(pending) > _MAX_PENDING_WRITES:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def mode_setup(engine: Engine, mode: Mode, scale: Scale | None) -> tuple[Mode, Scale]:
    """`mode` completed for `engine` (slide's crop and stride) and the keep-ratio scale the
    loader prepares images at (aug's views come from the decoded image: the loader then keeps
    the image's own size, 1.0, and its prepared image goes unused)."""
    mode = mode.for_engine(engine)
    chosen = mode.scale(engine, scale)
    return mode, chosen if chosen is not None else 1.0


def _write_outputs(index: int, item: PredictItem, prediction: ModePrediction,
                   o: PredictOptions) -> tuple[int, dict[str, Any]]:
    """Encode and write one image's PNGs (runs on the writer thread)."""
    pred = prediction.labels
    labels, *rest = item.outputs(o.suffixes)
    out: dict[str, Any] = {"image": str(item.image), "height": int(pred.shape[0]),
                           "width": int(pred.shape[1])}
    out["labels"] = str(atomic_write_bytes(labels, encode_prediction(pred, o.format)))
    if o.color:
        out["color"] = str(atomic_write_bytes(rest.pop(0), encode_prediction(pred, "color")))
    if o.overlay:
        # The loader keeps only the resized, normalized input; the overlay needs the original,
        # read under the run's own pixel limit.
        original = read_image(item.image, max_pixels=o.max_pixels)
        out["overlay"] = str(atomic_write_bytes(rest.pop(0), encode_prediction(
            pred, "overlay", image_bgr=original, opacity=o.opacity)))
    if prediction.confidence is not None:
        out["confidence"] = str(atomic_write_bytes(rest.pop(0), encode_png(
            confidence_png(prediction.confidence))))
    return index, out


@dataclass
class ScoreKernel:
    """Each sample's own confusion matrix (`image_confusion`), its labelIds PNG written to
    `options.save_predictions` if given; the record is `{"cm": ConfusionMatrix}`."""

    options: EvalOptions
    scale: Scale | None = None
    needs_engine: bool = True
    mode: Mode = WHOLE
    calibration: bool = False  # on while the engine gives logits (`setup`, then per batch)

    def setup(self, engine: Engine, name: str) -> dict[str, Any]:
        """Refuse a model whose classes are not Cityscapes' 19 (its ids mean other classes,
        and scoring them against these labels would print a number that means nothing)."""
        n = model_classes(engine)
        if n is not None and n != len(CLASSES):
            raise OcrnetError(f"model {name} predicts {n} classes, but the dataset is scored "
                              f"on the {len(CLASSES)} Cityscapes classes; its ids would be "
                              "scored as other classes, so it is not evaluated")
        self.mode, self.scale = mode_setup(engine, self.options.mode, self.options.scale)
        self.calibration = self.options.calibration and gives_logits(engine)
        return {"scale": list(self.scale) if isinstance(self.scale, tuple) else self.scale,
                "scale_source": scale_source(engine, self.options.scale),
                **self.mode.to_dict(default=False)}

    def run(self, engine: Engine | None, chunk: Chunk, *, workers: int | None = None,
            prefetch: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        assert engine is not None and self.scale is not None, "setup() first"
        o = self.options
        loaded = loaded_batches(chunk, scale=self.scale,
                                batch_size=run_batch(engine, o.batch_size), labels=True,
                                max_pixels=o.max_pixels, workers=workers, prefetch=prefetch)
        for indices, got, preds in in_flight(engine, loaded,
                                             lambda _, batch: self._predict(engine, batch)):
            if isinstance(got, SkippedFile):
                yield indices[0], {"path": got.path, "skipped": got.reason}
                continue
            assert preds is not None  # in_flight predicts every batch
            for index, pred, label, sample in zip(indices, preds, got.labels, got.samples,
                                                  strict=True):
                if o.save_predictions is not None:
                    atomic_write_bytes(o.save_predictions / f"{sample.stem}_pred_labelIds.png",
                                       encode_prediction(pred.labels, "cityscapes"))
                record = {"cm": image_confusion(pred.labels, label, len(CLASSES))}
                if pred.confidence is not None:
                    record["cal"] = Calibration()
                    record["cal"].update(pred.confidence, pred.labels, label)
                yield index, record

    def _predict(self, engine: Engine, got: Batch) -> list[ModePrediction]:
        """The batch's predictions, with confidence while calibrating; a model without
        logits (a labels-only package) turns calibration off instead of failing the run."""
        o = self.options

        def run(confidence: bool) -> list[ModePrediction]:
            return batch_predictions(engine, got.images, got.sizes, self.mode,
                                     batch=o.batch_size, resize=o.resize, confidence=confidence,
                                     original=lambda i: read_image(got.samples[i].image,
                                                                   max_pixels=o.max_pixels))
        if self.calibration:
            try:
                return run(True)
            except NoLogitsError:
                self.calibration = False
        return run(False)


@dataclass
class PairKernel:
    """Saved predictions scored against their labels (`score_pair`), no engine needed; the
    record is `{"cm": ConfusionMatrix}` or the skipped file."""

    needs_engine: bool = False

    def setup(self, engine: Engine | None, name: str) -> dict[str, Any]:
        return {}

    def run(self, engine: Engine | None, chunk: Chunk, *, workers: int | None = None,
            prefetch: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        n = workers or 1
        results = bounded_map(score_pair, [pair for _, pair in chunk], workers=n,
                              prefetch=prefetch or 2 * n)
        for (index, _), future in zip(chunk, results, strict=True):
            try:
                yield index, {"cm": future.result()}
            except BadFileError as err:
                yield index, {"path": str(err.path), "skipped": err.reason}

