"""Evaluation throughput by stage, and peak memory versus dataset size.

Generates a synthetic Cityscapes-layout dataset once, then, for each image count, runs a fresh
subprocess that times decode, preprocess and the model separately (one image at a time, after a
warm-up) and then a full `evaluate()` while a thread samples its RSS with psutil. The point is
the last columns: peak RSS must not grow with the number of images (the loader keeps at most
`prefetch` images in flight and the metric is one 19x19 matrix).

    python benchmarks/eval_throughput.py                       # 50 vs 200 images, 256x512
    python benchmarks/eval_throughput.py --images 4 8 --size 64x128   # smoke run
    python benchmarks/eval_throughput.py --checkpoint ocrnet_hr18.pth --scale 512x256
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.engines.base import Engine, InferResult


class FixedEngine(Engine):
    """A stand-in model: a fixed 1x1 convolution to 19 logits, then argmax. Cheap but real."""

    backend = "fixed-1x1"

    def __init__(self) -> None:
        super().__init__()
        self.weight = np.random.default_rng(0).standard_normal((19, 3)).astype(np.float32)

    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        logits = np.einsum("kc,nchw->nkhw", self.weight, batch, optimize=True)
        return InferResult(logits.argmax(1).astype(np.uint8), logits if want_logits else None)


class PeakRSS:
    """Samples this process's RSS every `interval` seconds on a thread; `.peak` in bytes."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def _open_engine(checkpoint: str | None) -> Engine:
    if checkpoint is None:
        return FixedEngine()
    from ocrnet.engines import open_model

    return open_model(checkpoint, device="cpu")


def _stage_times(engine: Engine, samples: list[Any], scale: tuple[int, int]) -> dict[str, float]:
    """Median ms per image of decode (image + label), preprocess and model, one image at a
    time after a warm-up image; nothing is kept, so this adds no memory of its own."""
    from ocrnet.data.cityscapes import read_label
    from ocrnet.data.transforms import preprocess, read_image

    times: dict[str, list[float]] = {"decode_ms": [], "preprocess_ms": [], "model_ms": []}
    for i, sample in enumerate([samples[0], *samples]):
        t0 = time.perf_counter()
        img = read_image(sample.image)
        read_label(sample.label, sample.label_format)
        t1 = time.perf_counter()
        x = preprocess(img, scale)[None]
        t2 = time.perf_counter()
        engine.infer(x)
        t3 = time.perf_counter()
        if i:  # the first pass is the warm-up
            for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                times[key].append(dt * 1e3)
    return {key: statistics.median(values) for key, values in times.items()}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement run (in its own process, so peak RSS is this run's alone)."""
    import psutil

    from ocrnet.data.cityscapes import discover
    from ocrnet.evaluate import evaluate

    scale = tuple(args.scale)
    engine = _open_engine(args.checkpoint)
    # Memory first, in a process that has done nothing else yet.
    baseline = psutil.Process().memory_info().rss
    with PeakRSS() as rss:
        start = time.perf_counter()
        result = evaluate(engine, args.data_root, limit=args.n, batch_size=args.batch_size,
                          scale=scale, workers=args.workers, progress=False)
        seconds = time.perf_counter() - start
    # Stage timings on a bounded subset: enough for a median.
    stages = _stage_times(engine, discover(args.data_root, "val")[: min(args.n, 20)], scale)
    engine.close()
    return {
        "images": result.num_images, **stages, "eval_img_s": result.num_images / seconds,
        "peak_rss_mb": rss.peak / 2**20, "rss_growth_mb": (rss.peak - baseline) / 2**20,
    }


def parent(args: argparse.Namespace) -> None:
    from ocrnet.data.synthetic import write_dataset

    h, w = args.size
    root = Path(args.data_root or tempfile.mkdtemp(prefix="ocrnet-bench-"))
    have = len(list((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png")))
    if have < max(args.images):
        print(f"generating {max(args.images)} synthetic {h}x{w} images in {root} ...",
              file=sys.stderr)
        write_dataset(root, train=0, val=max(args.images), size=(h, w), workers=args.workers,
                      progress=False)
    scale = args.scale or (w, h)
    rows = []
    for n in args.images:
        cmd = [sys.executable, __file__, "--child", "--n", str(n), "--data-root", str(root),
               "--scale", f"{scale[0]}x{scale[1]}", "--batch-size", str(args.batch_size)]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))

    model = args.checkpoint or FixedEngine.backend
    print(f"\nimages {h}x{w} -> scale {scale[0]}x{scale[1]}, model {model}, "
          f"batch {args.batch_size}, medians per image")
    header = (f"{'images':>7} {'decode ms':>10} {'preproc ms':>11} {'model ms':>9} "
              f"{'eval img/s':>11} {'peak RSS MB':>12} {'RSS growth MB':>14}")
    print(header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['images']:>7} {r['decode_ms']:>10.2f} {r['preprocess_ms']:>11.2f} "
              f"{r['model_ms']:>9.2f} {r['eval_img_s']:>11.1f} {r['peak_rss_mb']:>12.1f} "
              f"{r['rss_growth_mb']:>14.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


def _size(text: str) -> tuple[int, int]:
    a, b = text.lower().split("x")
    return int(a), int(b)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, nargs="+", default=[50, 200],
                   help="image counts to compare (default: 50 200)")
    p.add_argument("--size", type=_size, default=(256, 512),
                   help="synthetic image size HxW (default 256x512)")
    p.add_argument("--scale", type=_size, help="eval resize limit WxH (default: the image size)")
    p.add_argument("--checkpoint", help="time this model (via open_model) instead of a 1x1 conv")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, help="decode threads / generator processes")
    p.add_argument("--data-root", help="reuse or create the synthetic dataset here")
    p.add_argument("--json", help="also write the rows as JSON here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
    else:
        parent(args)


if __name__ == "__main__":
    main()
