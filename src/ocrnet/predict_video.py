"""`ocrnet predict MODEL clip.mp4 --out DIR`: a video's frames through the image kernel.

Frames stream from `ocrnet.data.video.VideoReader` one at a time (memory does not grow with
the clip) and each runs `ocrnet.work.modes.predict_image`, the path an image file takes, so a
frame's labels equal `predict` on that frame saved as a PNG. Outputs in `out_dir`, named after
the clip's stem:

- `<stem>_overlay.mp4` (`overlay=True`): the predictions blended over the frames (mp4v, the
  source's size and fps divided by `every`, so the clip keeps its duration);
- `<stem>_<index>_labelTrainIds.png` per frame (`frames=True`, index zero-padded to 6 digits;
  `_pred_labelIds.png` with `format="cityscapes"`), and `<stem>_<index>_confidence.png` with
  `confidence=True` (8-bit, round(p * 255) of the max softmax probability);
- `<stem>_frames.json`: the clip, the mode, and per frame its index, time, the milliseconds the
  frame took (decode excluded) and the fraction of each class.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet import defaults
from ocrnet.data.cityscapes import CLASSES
from ocrnet.data.video import Frame, VideoReader, VideoWriter
from ocrnet.engines import opened_engine
from ocrnet.engines.base import Engine
from ocrnet.fileio import atomic_write_bytes, atomic_write_text, prepare_folder
from ocrnet.predict import FORMATS, encode_prediction
from ocrnet.progress import progress_bar
from ocrnet.shapes import Size
from ocrnet.visualize import encode_png
from ocrnet.visualize import overlay as blend
from ocrnet.work.confidence import confidence_png
from ocrnet.work.formats import check_choice, check_opacity
from ocrnet.work.modes import Mode, ModePrediction, predict_image

CONFIDENCE_SUFFIX = "_confidence.png"


def predict_video(
    model_or_engine: Engine | str | os.PathLike[str],
    video: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    mode: str | Mode = defaults.MODE,
    crop: Size | str | None = None,
    stride: Size | str | None = None,
    ratios: Sequence[float] | None = None,
    flip: bool = False,
    every: int = 1,
    start: float = 0.0,
    duration: float | None = None,
    overlay: bool = False,
    frames: bool = False,
    confidence: bool = False,
    format: str = defaults.PREDICT_FORMAT,  # shadows the builtin: the CLI option is --format
    opacity: float = defaults.OPACITY,
    scale: tuple[int, int] | str | None = None,
    batch_size: int = defaults.BATCH_SIZE,
    device: str = defaults.DEVICE,
    resize: str = defaults.RESIZE,
    progress: bool = True,
    trust_checkpoint: bool = False,
    trust_package: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """Predict the frames of `video` (module docstring), return the JSON's content. Options
    as `ocrnet.predict.predict`; `every`, `start`, `duration`: `ocrnet.data.video`."""
    from ocrnet.data.transforms import parse_scale

    parsed = Mode.parse(mode, crop=crop, stride=stride, ratios=ratios, flip=flip)
    check_choice(format, list(FORMATS), "format")
    check_opacity(opacity)
    suffix = FORMATS[format]
    out = prepare_folder(out_dir)
    reader = VideoReader(video, every=every, start=start, duration=duration)
    with reader, opened_engine(model_or_engine, device=device, trust_checkpoint=trust_checkpoint,
                               trust_package=trust_package, threads=threads) as (engine, _):
        parsed = parsed.for_engine(engine)
        limit = parsed.scale(engine, parse_scale(scale) if isinstance(scale, str) else scale)
        stem = Path(video).stem
        record = _header(reader, parsed, out / f"{stem}_frames.json")
        writer = (VideoWriter(out / f"{stem}_overlay.mp4", reader.info.fps / every,
                              (reader.info.height, reader.info.width)) if overlay else None)
        run = _FrameRun(engine, parsed, limit, batch_size, resize, confidence,
                        out / stem if frames else None, format, suffix, opacity)
        try:
            with progress_bar(reader.planned() or 0, progress, "predict", unit="frame") as bar:
                for frame in reader:
                    record["frames"].append(run.frame(frame, writer))
                    bar.update(1)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            record["overlay"] = str(writer.close())
    return _finish(record)


@dataclass
class _FrameRun:
    """One frame's work: predict, time it, write its PNGs and its overlay frame."""

    engine: Engine
    mode: Mode
    scale: Any
    batch: int
    resize: str
    confidence: bool
    frames_base: Path | None  # out_dir / stem with --frames
    format: str
    suffix: str
    opacity: float

    def frame(self, frame: Frame, writer: VideoWriter | None) -> dict[str, Any]:
        began = time.perf_counter()
        pred = predict_image(self.engine, frame.image, self.mode, scale=self.scale,
                             batch=self.batch, resize=self.resize, confidence=self.confidence)
        ms = (time.perf_counter() - began) * 1e3
        row = {"index": frame.index, "time": round(frame.time, 6), "ms": round(ms, 3),
               "fractions": _fractions(pred.labels)}
        if self.frames_base is not None:
            base = self.frames_base.with_name(f"{self.frames_base.name}_{frame.index:06d}")
            row.update(_write_frame(base, pred, self.format, self.suffix))
        if writer is not None:
            writer.write(blend(frame.image[:, :, ::-1], pred.labels, self.opacity)[:, :, ::-1])
        return row


def _header(reader: VideoReader, mode: Mode, json_path: Path) -> dict[str, Any]:
    info = reader.info
    return {"video": info.path, "fps": info.fps, "height": info.height, "width": info.width,
            "every": reader.every, "start": reader.start, "duration": reader.duration,
            **mode.to_dict(), "classes": list(CLASSES), "json": str(json_path), "frames": []}


def _fractions(labels: np.ndarray) -> list[float]:
    """Each class's share of the frame's pixels, in class order (rounded to 1e-6)."""
    counts = np.bincount(labels.ravel(), minlength=256)[: len(CLASSES)]
    return [round(float(c) / labels.size, 6) for c in counts]


def _write_frame(base: Path, pred: ModePrediction, fmt: str, suffix: str) -> dict[str, str]:
    written = {"labels": str(atomic_write_bytes(base.with_name(base.name + suffix),
                                                encode_prediction(pred.labels, fmt)))}
    if pred.confidence is not None:
        path = base.with_name(base.name + CONFIDENCE_SUFFIX)
        written["confidence"] = str(atomic_write_bytes(path, encode_png(
            confidence_png(pred.confidence))))
    return written


def _finish(record: dict[str, Any]) -> dict[str, Any]:
    rows = record["frames"]
    seconds = sum(r["ms"] for r in rows) / 1e3
    record["summary"] = {"frames": len(rows), "seconds": round(seconds, 6),
                         "frames_per_second": round(len(rows) / seconds, 3) if seconds else None}
    atomic_write_text(record["json"], json.dumps(record, indent=1) + "\n")
    return record
