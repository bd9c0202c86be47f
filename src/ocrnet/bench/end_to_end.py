"""End-to-end mode: image files -> label PNGs through the parallel loader, time per stage.

decode/preprocess are single-thread costs from a serial pass (which also warms the page cache);
the pipelined pass then shows how much of them the loader hides: `input_wait` is what the
inference loop still waited for input. Postprocess is the nearest resize of labels back to the
original size; encode is PNG encoding plus the write. The network runs at the images' own
preprocessed shape (mmseg's keep-ratio resize to fit 2048x1024, which upscales small images), not
at the benchmark's `shape`: `input_shapes` records it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.bench.models import LoadedModel
from ocrnet.bench.report import E2E_STAGES
from ocrnet.bench.timing import now_ns
from ocrnet.errors import DataError


def end_to_end(model: LoadedModel, directory: Path, batch: int,
               progress: Callable[[str], None]) -> dict[str, Any]:
    """Run every image under `directory` through `model`; images/s and ms per image per stage."""
    from ocrnet.data.images import IMAGE_SUFFIXES, is_image_file

    files = sorted(p for p in directory.rglob("*") if is_image_file(p) and p.is_file())
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {directory}")
    progress(f"end-to-end {model.name}, batch {batch}: {len(files)} images ...")
    serial, shapes, first = _serial_pass(files, batch)
    model.engine.infer(np.stack(first))  # untimed: compiles for the images' own shape
    piped, wall = _pipelined_pass(model, files, batch)
    n = len(files)
    per = {**serial, **piped}
    return {
        "images": n,
        "input_shapes": shapes,
        "wall_s": round(wall / 1e9, 4),
        "throughput_ips": round(n / (wall / 1e9), 4),
        "per_image_ms": {k: round(per[k] / n / 1e6, 3) for k in E2E_STAGES},
    }


def _serial_pass(files: list[Path], batch: int) -> tuple[dict[str, int], list[str],
                                                         list[np.ndarray]]:
    """ns spent decoding and preprocessing, the network input shapes, a first batch."""
    from ocrnet.data.transforms import preprocess, read_image

    t_dec = t_pre = 0
    first: list[np.ndarray] = []
    shapes: dict[str, None] = {}  # the network's input shapes after mmseg's keep-ratio resize
    for p in files:
        t0 = now_ns()
        img = read_image(p)
        t1 = now_ns()
        x = preprocess(img)
        t_dec, t_pre = t_dec + t1 - t0, t_pre + now_ns() - t1
        shapes[f"{x.shape[1]}x{x.shape[2]}"] = None
        if len(first) < batch and (not first or first[0].shape == x.shape):
            first.append(x)
    return {"decode": t_dec, "preprocess": t_pre}, list(shapes), first


def _pipelined_pass(model: LoadedModel, files: list[Path], batch: int
                    ) -> tuple[dict[str, int], int]:
    """ns per stage of the loader-fed loop, and its wall time."""
    import tempfile

    import cv2

    from ocrnet.data.cityscapes import Sample
    from ocrnet.data.loader import Loader
    from ocrnet.data.transforms import resize_labels

    samples = [Sample(stem=p.stem, city=p.parent.name, image=p) for p in files]
    acc = dict.fromkeys(("input_wait", "infer", "postprocess", "encode"), 0)
    with tempfile.TemporaryDirectory(prefix="ocrnet-bench-") as tmp:
        start = mark = now_ns()
        for b in Loader(samples, batch_size=batch, labels=False):
            t0 = now_ns()
            acc["input_wait"] += t0 - mark
            labels = model.engine.infer(b.images).labels
            if model.sync is not None:
                model.sync()
            t1 = now_ns()
            outs = [resize_labels(lab, size) for lab, size in zip(labels, b.sizes, strict=True)]
            t2 = now_ns()
            for s, out in zip(b.samples, outs, strict=True):
                cv2.imwrite(str(Path(tmp) / f"{s.stem}.png"), out)
            mark = now_ns()
            acc["infer"] += t1 - t0
            acc["postprocess"] += t2 - t1
            acc["encode"] += mark - t2
        wall = now_ns() - start
    return acc, wall
