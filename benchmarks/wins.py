"""Issue 23's wins side by side, in one run: the final resize + argmax on the host in bands
(`build --outputs lowres`) against OpenVINO's in-graph Interpolate + TopK, and predict with
K images in flight through OpenVINO's throughput mode (`--streams`).

    python benchmarks/wins.py --shape 512x1024                  # a sanity run (loaded machine)
    python benchmarks/wins.py --shape 1024x2048 --precisions fp32 int8 --iterations 5 \\
        --images 16 --out runs/wins                               # the quiet-machine run

1. One export of the checkpoint (default: the shipped demo model), cut (`ocrnet.export.
   select_outputs`) into graphs that differ only after the classifier: `default` (labels and
   logits: what `build` writes), `labels` (in-graph Interpolate + TopK, what
   profile_layers.py builds) and `lowres` (ends before the resize: labels on the host). Each
   is built per precision into --work and reused by later runs.
2. `ocrnet.bench.benchmark` times them interleaved: engine calls, labels at the input size
   (the lowres rows include the host step).
3. The host step alone on the same low-resolution logits: the banded resize-then-argmax
   (`ocrnet.data.resize_argmax`) against the per-channel path and torch's whole resize +
   np.argmax.
4. Labels on a generated scene: in-graph against host (differing pixels), host against
   torch's resize + np.argmax of the package's own low-resolution logits (mmseg's path: must
   be 0), the default package's logits against that resize (max |delta|: whether OpenVINO's
   Interpolate rounds as torch does).
5. `predict` over --images generated scenes with 1 and 2 streams, interleaved (img/s).
6. With --batch2: `eval` of static int8 packages (labels graph) at batch 1 and batch 2 on
   those scenes, one stream each, and batch 1 with 2 streams, interleaved (img/s).

Every figure is printed with the CPU, its flags and the load average; --out gets wins.json.
Not a test: on a loaded machine, say so with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.build import build_package
from ocrnet.errors import OcrnetError
from ocrnet.machine import machine_info
from ocrnet.pipeline import DEMO_CHECKPOINT
from ocrnet.shapes import parse_size

GRAPHS = {"default": ["labels", "logits"], "labels": ["labels"], "lowres": ["lowres"]}


def stamp() -> str:
    """The machine line printed with every figure: CPU, flags, load average now."""
    mc = machine_info()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return (f"[{mc['cpu']}, {mc['cores_usable']} cores, flags {' '.join(mc['cpu_flags'])}, "
            f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}]")


def say(text: str) -> None:
    print(f"{text}  {stamp()}", flush=True)


def scenes(root: Path, h: int, w: int, count: int) -> Path:
    """Generated street scenes at the benchmark's size (int8 calibrates on them, predict runs
    on them)."""
    from ocrnet.data.synthetic import write_dataset

    if not (root / "synthetic.json").exists():
        write_dataset(root, train=count, val=0, size=(h, w), seed=0, progress=False)
    return root


def packages(args: argparse.Namespace, h: int, w: int) -> dict[str, dict[str, Path]]:
    """{precision: {graph: package}}, each graph cut from one export per precision (Winograd
    for fp32, as `build` chooses; the plain graph for int8)."""
    from ocrnet.export import export_onnx, select_outputs

    work = Path(args.work)
    built: dict[str, dict[str, Path]] = {}
    for precision in args.precisions:
        winograd = precision == "fp32"
        full = work / f"export-{h}x{w}-{'winograd' if winograd else 'plain'}.onnx"
        if not full.exists():
            started = time.perf_counter()
            export_onnx(args.checkpoint, full, shape=(1, 3, h, w), winograd=winograd)
            say(f"exported {full} in {time.perf_counter() - started:.0f} s")
        built[precision] = {}
        for graph, outputs in GRAPHS.items():
            if graph == "default" and precision != "fp32":
                continue  # one more calibration, and only fp32's logits say something here
            pkg = work / f"openvino-{precision}-{graph}-{h}x{w}"
            if not (pkg / "ocrnet.json").exists():
                cut = select_outputs(full, work / f"{graph}-{full.name}", outputs)
                calib = scenes(work / f"calib-{h}x{w}", h, w, args.calib_count) \
                    if precision.startswith("int8") else None
                started = time.perf_counter()
                try:
                    build_package(cut, pkg, backend="openvino", precision=precision,
                                  calib_dir=calib, calib_count=args.calib_count,
                                  overwrite=True)
                except OcrnetError as err:
                    say(f"skip openvino {precision} {graph}: {err}")
                    continue
                say(f"built {pkg} in {time.perf_counter() - started:.0f} s")
            built[precision][graph] = pkg
    return built


def timing(built: dict[str, dict[str, Path]], args: argparse.Namespace, h: int, w: int
           ) -> dict[str, Any]:
    """The packages interleaved through `ocrnet.bench.benchmark` (labels at the input size)."""
    from ocrnet.bench import BenchSettings, benchmark

    paths = [str(p) for graphs in built.values() for p in graphs.values()]
    settings = BenchSettings(shape=(h, w), iterations=args.iterations, threads=args.threads)
    report = benchmark(paths, settings, progress=None)
    say("engine calls, labels at the input size, interleaved:")
    print(report.table(), flush=True)
    return report.to_json()


def host_step(lowres: np.ndarray, size: tuple[int, int], repeats: int) -> dict[str, float]:
    """Best-of-`repeats` seconds of each way from the same low-resolution logits to labels."""
    import torch

    from ocrnet.data import resize_argmax
    from ocrnet.data.transforms import argmax_by_channel, resize_logits

    ways = {
        "banded (resize_argmax)": lambda: resize_argmax.resized_argmax(lowres, size),
        "banded, one thread": lambda: resize_argmax.resized_argmax(lowres, size, threads=1),
        # the path logits_to_labels takes for other ratios (one channel at a time)
        "per channel": lambda: argmax_by_channel(lowres, size),
        "torch resize + np.argmax": lambda: resize_logits(lowres, size).argmax(0),
    }
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, run in ways.items():
            started = time.perf_counter()
            run()
            best[name] = min(best.get(name, 1e9), time.perf_counter() - started)
    say(f"host step alone, 19x{lowres.shape[1]}x{lowres.shape[2]} -> {size[0]}x{size[1]}, "
        f"best of {repeats}, torch threads {torch.get_num_threads()}:")
    for name, seconds in best.items():
        print(f"  {name:28s} {1e3 * seconds:9.1f} ms", flush=True)
    return best


def agreement(graphs: dict[str, Path], x: np.ndarray) -> dict[str, Any]:
    """Labels of one scene from each graph, against mmseg's path on the lowres output."""
    from ocrnet.engines import open_model

    out: dict[str, Any] = {}
    with open_model(graphs["lowres"]) as engine:
        host = engine.infer(x, return_logits=True)
    assert host.logits is not None
    torch_labels = host.logits.argmax(1).astype(np.uint8)  # torch's resize, np.argmax
    out["host_vs_torch_resize_argmax"] = int((host.labels != torch_labels).sum())
    if "labels" in graphs:
        with open_model(graphs["labels"]) as engine:
            out["in_graph_vs_host"] = int((engine.infer(x).labels != host.labels).sum())
    if "default" in graphs:
        with open_model(graphs["default"]) as engine:
            full = engine.infer(x, return_logits=True)
        assert full.logits is not None
        out["default_logits_max_abs_delta_vs_torch_resize"] = float(
            np.abs(full.logits - host.logits).max())
        out["default_labels_vs_host"] = int((full.labels != host.labels).sum())
    out["pixels"] = int(host.labels.size)
    return out


def streams(pkg: Path, images: list[Path], repeats: int) -> dict[str, float]:
    """predict's images per second with 1 and 2 streams, interleaved, best of `repeats`."""
    from ocrnet.predict import predict

    rate: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ocrnet-wins-") as tmp:
        for _ in range(repeats):
            for k in (1, 2):
                started = time.perf_counter()
                predict(pkg, images, Path(tmp) / f"s{k}", streams=k, overwrite=True,
                        progress=False)
                seconds = time.perf_counter() - started
                rate[f"streams {k}"] = max(rate.get(f"streams {k}", 0.0), len(images) / seconds)
    say(f"predict {pkg.name}, {len(images)} images (files -> label PNGs), best of {repeats}: "
        + ", ".join(f"{k} {v:.3f} img/s" for k, v in rate.items()))
    return rate


def batch_two(args: argparse.Namespace, h: int, w: int, root: Path) -> dict[str, float]:
    """eval's images per second: int8 static batch 1 and batch 2 (one stream), and batch 1
    with two streams (the other way to keep both cores busy), interleaved, best of repeats."""
    from ocrnet.evaluate import evaluate

    work, calib = Path(args.work), scenes(Path(args.work) / f"calib-{h}x{w}", h, w,
                                          args.calib_count)
    pkgs = {}
    for n in (1, 2):
        pkg = work / f"openvino-int8-labels-{n}x{h}x{w}"
        if not (pkg / "ocrnet.json").exists():
            build_package(args.checkpoint, pkg, backend="openvino", precision="int8",
                          shape=(n, 3, h, w), calib_dir=calib, calib_count=args.calib_count,
                          outputs=["labels"], overwrite=True)
        pkgs[n] = pkg
    runs = {"batch 1": (pkgs[1], 1), "batch 2": (pkgs[2], 1), "batch 1, 2 streams": (pkgs[1], 2)}
    rate: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, (pkg, k) in runs.items():
            result = evaluate(pkg, root, "train", streams=k, progress=False)
            rate[name] = max(rate.get(name, 0.0), result.num_images / result.extra["seconds"])
    say(f"eval int8 {h}x{w}, {args.images} images, best of {args.repeats}: "
        + ", ".join(f"{k} {v:.3f} img/s" for k, v in rate.items()))
    return rate


def scene_batch(h: int, w: int) -> np.ndarray:
    from ocrnet.data.synthetic import generate_scene
    from ocrnet.data.transforms import normalize

    scene = generate_scene(123, h, w)
    rgb = scene[0] if isinstance(scene, tuple) else scene
    return normalize(np.ascontiguousarray(rgb[:, :, ::-1]))[None]


def lowres_of(checkpoint: str, x: np.ndarray) -> np.ndarray:
    """The model's own 1/4-resolution logits of `x` (PyTorch eager), for the host step."""
    import torch

    from ocrnet.model import model_from_checkpoint

    model = model_from_checkpoint(checkpoint).eval()
    with torch.no_grad():
        return model.forward_heads(torch.from_numpy(x))[0][0].numpy().copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    parser.add_argument("--shape", default="512x1024", help="HxW (batch 1)")
    parser.add_argument("--precisions", nargs="+", default=["fp32"])
    parser.add_argument("--iterations", type=int, default=4, help="timed calls per package")
    parser.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    parser.add_argument("--images", type=int, default=8, help="scenes predict runs on")
    parser.add_argument("--repeats", type=int, default=3, help="host-step and predict rounds")
    parser.add_argument("--stream-graphs", nargs="+", default=["labels", "lowres"],
                        choices=["labels", "lowres"],
                        help="graphs predict runs with 1 and 2 streams (each costs 2 x repeats"
                             " passes over --images)")
    parser.add_argument("--calib-count", type=int, default=8)
    parser.add_argument("--batch2", action="store_true",
                        help="also eval int8 at static batch 2 vs 1 (two more int8 builds)")
    parser.add_argument("--work", default="runs/wins/packages")
    parser.add_argument("--out", default="runs/wins")
    args = parser.parse_args()

    try:
        h, w = parse_size(args.shape, what="--shape")
    except OcrnetError as err:
        parser.error(str(err))
    Path(args.work).mkdir(parents=True, exist_ok=True)
    say(f"wins.py --shape {h}x{w} --precisions {' '.join(args.precisions)}")
    built = packages(args, h, w)
    results: dict[str, Any] = {"machine": machine_info(), "shape": [h, w]}
    results["timing"] = timing(built, args, h, w)
    x = scene_batch(h, w)
    results["host_step_s"] = host_step(lowres_of(args.checkpoint, x), (h, w), args.repeats)
    results["agreement"] = {p: agreement(g, x) for p, g in built.items() if "lowres" in g}
    say(f"labels on one scene: {json.dumps(results['agreement'])}")
    root = scenes(Path(args.work) / f"images-{h}x{w}-{args.images}", h, w, args.images)
    images = sorted((root / "leftImg8bit").rglob("*.png"))
    results["predict_img_s"] = {f"{p}-{g}": streams(pkg, images, args.repeats)
                                for p, graphs in built.items() for g, pkg in graphs.items()
                                if g in args.stream_graphs}
    if args.batch2:
        results["eval_int8_img_s"] = batch_two(args, h, w, root)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "wins.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    say(f"wrote {out / 'wins.json'}")


if __name__ == "__main__":
    main()
