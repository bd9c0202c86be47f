"""mmseg's test modes side by side: whole vs slide (two strides) vs aug, and video vs PNG files.

    python benchmarks/modes.py                                  # 1024x2048, openvino fp32+int8
    python benchmarks/modes.py --shape 128x256 --crop 64x128 --images 2 --video-frames 20  # quick

Per backend:precision row and mode: ms/image (median over the demo's generated val scenes at
--shape, after one warm-up image), the process's peak RSS while it ran (each cell in its own
process, so one mode's memory is not another's), and mIoU of the shipped demo model (trained
weights) against the scenes' labels. Packages: whole runs a static package at --shape, slide a
static package at --crop (its tiles), aug a dynamic one (its views have every size).
Then video: `predict` on a generated clip (mp4v) vs the same frames as PNG files, frames/s
(the goal: decoding the video is not the bottleneck, >= 95 %), and the RSS at frame 10 and at
the last frame of a long clip (--rss-frames), which must not grow.
Not a test: run it on a quiet machine and paste the tables into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ocrnet.pipeline import DEMO_CHECKPOINT


def _packages(args: argparse.Namespace, work: Path, row: str) -> dict[str, Path]:
    """The three packages one row needs, built once into --work."""
    from ocrnet.build import build_package

    backend, precision = row.split(":")
    h, w = (int(v) for v in args.shape.split("x"))
    ch, cw = (int(v) for v in args.crop.split("x"))
    calib = _scenes(work, h, w, args.images)
    out = {}
    for kind, shape, dynamic in (("whole", (1, 3, h, w), False),
                                 ("slide", (1, 3, ch, cw), False),
                                 ("aug", (1, 3, h, w), True)):
        path = work / f"{backend}-{precision}-{kind}-{shape[2]}x{shape[3]}"
        if not (path / "ocrnet.json").exists():
            opts = {"calib_dir": calib, "calib_count": 8} if precision.startswith("int8") else {}
            build_package(args.checkpoint, path, backend=backend, precision=precision,
                          shape=shape, dynamic=dynamic, trust_checkpoint=True, **opts)
        out[kind] = path
    return out


def _scenes(work: Path, h: int, w: int, val: int) -> Path:
    from ocrnet.data.synthetic import write_dataset

    root = work / f"scenes_{h}x{w}_{val}"
    if not (root / "synthetic.json").exists():
        write_dataset(root, train=8, val=val, size=(h, w), seed=0, progress=False)
    return root


def cell(package: str, scenes: str, mode: dict, threads: int | None) -> dict:
    """One (package, mode) measurement; runs in a child process (see `main`)."""
    from ocrnet.bench.memory import PeakRss
    from ocrnet.data.cityscapes import discover, read_label
    from ocrnet.data.transforms import read_image
    from ocrnet.engines import open_model
    from ocrnet.metrics import ConfusionMatrix
    from ocrnet.work.modes import Mode, predict_image

    samples = discover(scenes, "val")
    matrix, times, peak = ConfusionMatrix(), [], PeakRss()
    with open_model(package, threads=threads) as engine:
        parsed = Mode.parse(**mode).for_engine(engine)
        images = [read_image(s.image) for s in samples]
        # the scenes' own size (at 1024x2048 that is mmseg's 2048x1024: a no-op either way)
        own = (images[0].shape[1], images[0].shape[0])
        limit = parsed.scale(engine, None if parsed.name == "aug" else own)
        predict_image(engine, images[0], parsed, scale=limit)  # warm-up
        peak.reset()
        for sample, image in zip(samples, images, strict=True):
            began = time.perf_counter()
            pred = predict_image(engine, image, parsed, scale=limit)
            times.append((time.perf_counter() - began) * 1e3)
            matrix.update(pred.labels, read_label(sample.label, sample.label_format or
                                                  "trainIds"))
    return {"ms": statistics.median(times), "rss_mb": peak.read_mb(),
            "miou": matrix.results().miou, "mode": parsed.to_dict()}


def _run_cell(package: Path, scenes: Path, mode: dict, threads: int | None) -> dict:
    code = ("import json, sys; sys.path.insert(0, 'benchmarks'); from modes import cell; "
            f"print(json.dumps(cell({str(package)!r}, {str(scenes)!r}, {mode!r}, {threads!r})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _video(args: argparse.Namespace, work: Path, package: Path) -> dict:
    """predict on a clip vs on the same frames as PNGs (frames/s), RSS over a long clip."""
    import numpy as np

    from ocrnet.bench.memory import rss_mb
    from ocrnet.data.synthetic import generate_scene
    from ocrnet.data.video import VideoReader, VideoWriter
    from ocrnet.engines import open_model
    from ocrnet.predict import predict
    from ocrnet.predict_video import predict_video
    from ocrnet.visualize import write_png

    h, w = (int(v) for v in args.shape.split("x"))
    scenes = [np.ascontiguousarray(generate_scene(s, h, w)[0][:, :, ::-1]) for s in range(4)]
    clip = work / f"clip_{h}x{w}_{args.video_frames}.mp4"
    if not clip.exists():
        with VideoWriter(clip, 10.0, (h, w)) as out:
            for i in range(args.video_frames):
                out.write(scenes[i % 4])
    pngs = work / f"frames_{h}x{w}_{args.video_frames}"
    if not pngs.exists():
        for f in VideoReader(clip):
            write_png(pngs / f"f{f.index:06d}.png", f.image[:, :, ::-1])
    with open_model(package, threads=args.threads) as engine:
        # warm-up first, so that neither timed run pays the engine's first call
        predict(engine, sorted(pngs.glob("*.png"))[:1], work / "warm_out", progress=False,
                overwrite=True)
        began = time.perf_counter()
        predict_video(engine, clip, work / "video_out", progress=False)
        video_s = time.perf_counter() - began
        began = time.perf_counter()
        predict(engine, pngs, work / "png_out", progress=False)
        png_s = time.perf_counter() - began
        rss = _rss_over(args, work, rss_mb, predict_video)
    n = args.video_frames
    return {"frames": n, "video_fps": n / video_s, "png_fps": n / png_s,
            "ratio": png_s / video_s, **rss}


def _rss_over(args: argparse.Namespace, work: Path, rss_mb: Any, predict_video: Any) -> dict:
    """RSS at frame 10 and at the last frame of a --rss-frames clip of 64x128 frames, run by
    the eager checkpoint at that size (what grows with the clip's length shows, fast)."""
    import numpy as np

    from ocrnet.data.video import VideoWriter
    from ocrnet.engines import open_model
    from ocrnet.engines.base import Engine, InferResult

    clip = work / f"long_{args.rss_frames}.mp4"
    if not clip.exists():
        rng = np.random.default_rng(0)
        with VideoWriter(clip, 25.0, (64, 128)) as out:
            for _ in range(args.rss_frames):
                out.write(rng.integers(0, 255, (64, 128, 3), np.uint8))
    marks: dict[str, float] = {}

    class Probe(Engine):  # the eager engine, reading RSS at its 10th and last call
        backend = "probe"

        def __init__(self, inner: Engine) -> None:
            super().__init__()
            self.inner, self.calls = inner, 0
            self._metadata = dict(inner.metadata)

        def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
            self.calls += 1
            if self.calls in (10, args.rss_frames):
                marks[f"rss_mb_frame_{self.calls}"] = rss_mb()
            return self.inner.infer(batch, return_logits=want_logits)

    with open_model(args.checkpoint, trust_checkpoint=True) as eager:
        predict_video(Probe(eager), clip, work / "long_out", progress=False, scale="128x64")
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    parser.add_argument("--shape", default="1024x2048", help="HEIGHTxWIDTH of the scenes")
    parser.add_argument("--crop", default="512x1024", help="slide's crop (HEIGHTxWIDTH)")
    parser.add_argument("--strides", nargs=2, default=["341x682", "512x1024"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5, 1.0, 1.5])
    parser.add_argument("--rows", nargs="+", default=["openvino:fp32", "openvino:int8"])
    parser.add_argument("--images", type=int, default=4, help="val scenes per cell")
    parser.add_argument("--video-frames", type=int, default=100)
    parser.add_argument("--rss-frames", type=int, default=1000)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--work", default="runs/bench_modes")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    h, w = (int(v) for v in args.shape.split("x"))
    scenes = _scenes(work, h, w, args.images)
    modes = [("whole", {"mode": "whole"})]
    modes += [(f"slide {s}", {"mode": "slide", "crop": args.crop, "stride": s})
              for s in args.strides]
    modes.append((f"aug {args.ratios}+flip", {"mode": "aug", "ratios": args.ratios,
                                              "flip": True}))
    print(f"load average before: {os.getloadavg()}  shape {args.shape}  images {args.images}")
    print("| row | mode | ms/image | peak RSS MB | mIoU |\n|---|---|---:|---:|---:|")
    for row in args.rows:
        packages = _packages(args, work, row)
        for name, mode in modes:
            kind = mode["mode"]
            res = _run_cell(packages[kind], scenes, mode, args.threads)
            print(f"| {row} | {name} | {res['ms']:.1f} | {res['rss_mb']:.0f} | "
                  f"{100 * res['miou']:.2f} |", flush=True)
    video = _video(args, work, _packages(args, work, args.rows[0])["whole"])
    rss = {k: round(v, 1) for k, v in video.items() if k.startswith("rss")}
    print(f"video ({args.rows[0]}, whole, {video['frames']} frames): {video['video_fps']:.2f} "
          f"frames/s from the clip vs {video['png_fps']:.2f} from PNG files "
          f"({100 * video['ratio']:.0f} %); RSS MB {json.dumps(rss)}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
