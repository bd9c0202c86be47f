"""The report of `ocrnet run`: report.json, report.md, the summary chart, sample strips, the
terminal table, and the `--max-drop` gate over the ΔmIoU intervals."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocrnet import __version__, defaults
from ocrnet.data.cityscapes import CLASSES
from ocrnet.errors import OcrnetError
from ocrnet.precision import Precision

if TYPE_CHECKING:
    from ocrnet.pipeline.config import RunConfig


class AccuracyGateError(OcrnetError):
    """`run --max-drop X`: some precision's ΔmIoU interval reaches below -X."""


def check_max_drop(report: dict[str, Any], max_drop: float) -> None:
    """Raise `AccuracyGateError` naming each precision whose 95% interval's lower bound of
    ΔmIoU (vs PyTorch eager fp32) is below -max_drop mIoU points."""
    failed = [r for r in report["results"] if r.get("delta_ci")
              and r["delta_ci"][0] < -max_drop]
    if failed:
        names = ", ".join(f"{r['precision']} ({r['backend']}: ΔmIoU {r['delta_mIoU']:+.3f}, "
                          f"95% CI [{r['delta_ci'][0]:+.3f}, {r['delta_ci'][1]:+.3f}])"
                          for r in failed)
        raise AccuracyGateError(f"--max-drop {max_drop}: the ΔmIoU interval of {names} reaches "
                                f"below -{max_drop} mIoU points (report written)")


def build_report(cfg: RunConfig, models: list[tuple[str, str, str, Path]],
                 evals: dict[str, dict[str, Any]], bench: dict[str, Any], checkpoint: Path,
                 data_root: Path, scale: tuple[int, int], shape: list[int], *,
                 intervals: dict[str, dict[str, Any]] | None = None,
                 mode: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report: one row per model (accuracy, ΔmIoU and its interval, speed at the smallest
    benchmarked batch), with what was run where; `mode`: the evals' test mode as resolved
    (`Mode.to_dict`: slide's crop and stride even where they were left to their defaults)."""
    by_model = {}
    for r in bench["results"]:
        if r["batch"] == min(cfg.bench_batches):
            by_model[r["model"]] = r
    bench_rows = list(by_model.values())
    baseline_ips = bench_rows[0]["throughput_ips"] if bench_rows else None
    fp32_miou = evals[models[0][0]]["mIoU"]
    rows = []
    for (label, backend, precision, _path), r in zip(models, bench_rows, strict=True):
        e = evals[label]
        ci = (intervals or {}).get(label)
        rows.append({
            "delta_ci": [ci["ci_low"], ci["ci_high"]] if ci else None,
            "delta_interval": ci,
            "model": label, "precision": precision, "backend": backend,
            "mIoU": e["mIoU"], "aAcc": e["aAcc"], "mAcc": e["mAcc"],
            "delta_mIoU": None if e["mIoU"] is None else round(e["mIoU"] - fp32_miou, 3),
            "latency_ms_p50": r["latency_ms"]["p50"], "throughput_ips": r["throughput_ips"],
            "ratio_to_fp32_eager": (r["throughput_ips"] / baseline_ips) if baseline_ips else None,
            "classes": e["classes"],
        })
    return {
        "demo": cfg.is_demo,
        "checkpoint": str(checkpoint),
        "data_root": str(data_root),
        "split": "val",
        "scale": list(scale),
        "input_shape": shape,
        "mode": mode or {"mode": "whole"},
        "num_images": evals[models[0][0]]["num_images"],
        "results": rows,
        "machine": bench.get("machine"),
        "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
        "ocrnet": __version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per model for the summary tables (terminal and Markdown)."""
    return [[r["precision"], r["backend"], _fmt(r["mIoU"]), _delta_cell(r),
             _fmt(r["aAcc"]), _fmt(r["mAcc"]), _fmt(r["latency_ms_p50"], 1),
             _fmt(r["throughput_ips"]), f"{_fmt(r['ratio_to_fp32_eager'])}x"]
            for r in report["results"]]


def _delta_cell(row: dict[str, Any]) -> str:
    """ΔmIoU with its 95% paired bootstrap interval, e.g. `-0.072 [-0.110, -0.031]`."""
    ci = row.get("delta_ci")
    text = _fmt(row["delta_mIoU"], 3)
    return f"{text} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else text


def table(report: dict[str, Any]) -> str:
    """The summary table for the terminal."""
    from ocrnet.tables import text_table

    head = ["precision", "backend", "mIoU", "ΔmIoU", "aAcc", "mAcc", "p50 ms", "img/s",
            "vs eager fp32"]
    return text_table(head, _rows(report), left=2)


def _markdown(report: dict[str, Any]) -> str:
    from ocrnet.tables import markdown_table

    kind = ("demo: the shipped synthetic-scenes model on generated validation scenes"
            if report["demo"] else "checkpoint on Cityscapes")
    lines = [
        "# ocrnet run report", "",
        f"- {kind}", f"- checkpoint: `{report['checkpoint']}`",
        f"- data: `{report['data_root']}` split `val`, {report['num_images']} images, "
        f"resized to fit {report['scale'][0]}x{report['scale'][1]}",
        f"- engine input: {'x'.join(map(str, report['input_shape']))}",
        f"- machine: {(report.get('machine') or {}).get('cpu', 'n/a')}",
        f"- date: {report['date']}, ocrnet {report['ocrnet']}", "",
        "## Accuracy and speed", "",
        markdown_table(["precision", "backend", "mIoU", "ΔmIoU vs eager [95% CI]", "aAcc", "mAcc",
                        "p50 latency (ms)", "throughput (img/s)", "vs PyTorch eager fp32"],
                       _rows(report), left=2),
    ]
    per_class = [[name, *(_fmt(r["classes"][i]["IoU"]) for r in report["results"])]
                 for i, name in enumerate(CLASSES)]
    lines += ["", "![mIoU and throughput per precision](summary.png)", "",
              "## Per-class IoU (%)", "",
              markdown_table(["class", *(r["model"] for r in report["results"])], per_class)]
    lines += ["", "## Samples (image | fp32 package | int8 (or lowest) package | ground truth)", ""]
    lines += [f"![sample {i}](samples/sample_{i}.png)" for i in range(report.get("samples", 0))]
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict[str, Any], cfg: RunConfig,
                 packages: dict[str, Path], data_root: Path, scale: tuple[int, int]) -> None:
    from ocrnet import visualize

    report["samples"] = _write_samples(out / "samples", cfg, packages, data_root, scale,
                                       report.get("mode") or {"mode": "whole"})
    visualize.precision_chart(report["results"], out / "summary.png", max_drop=cfg.max_drop,
                              title=f"{report['num_images']} val images, "
                              f"{'x'.join(map(str, report['input_shape']))}")
    from ocrnet.fileio import atomic_write_text

    atomic_write_text(out / "report.json", json.dumps(report, indent=1, default=str) + "\n")
    atomic_write_text(out / "report.md", _markdown(report))


def _write_samples(folder: Path, cfg: RunConfig, packages: dict[str, Path], data_root: Path,
                   scale: tuple[int, int], mode: dict[str, Any]) -> int:
    """A few image | prediction | ground-truth strips, for people who'd rather look, predicted
    in the run's `mode` (slide's packages are built at the crop and run nothing else)."""
    import numpy as np

    from ocrnet import visualize
    from ocrnet.data.cityscapes import discover, read_label
    from ocrnet.data.transforms import read_image
    from ocrnet.engines import open_model
    from ocrnet.work.modes import Mode, predict_image

    run = Mode.parse(mode["mode"], crop=mode.get("crop"), stride=mode.get("stride"))
    samples = discover(data_root, "val")[: cfg.samples]
    if not samples:
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    low = packages.get("int8") or next((v for k, v in packages.items()
                                        if Precision.parse(k).quantized),
                                       next(reversed(packages.values()), None))
    engines = [open_model(p) for p in ([packages["fp32"]] if "fp32" in packages else [])]
    if low is not None and (not engines or low != packages.get("fp32")):
        engines.append(open_model(low))
    try:
        for i, sample in enumerate(samples):
            bgr = read_image(sample.image)
            preds = [predict_image(engine, bgr, run.for_engine(engine), scale=scale,
                                   resize=defaults.RESIZE).labels for engine in engines]
            truth = read_label(sample.label, sample.label_format or "trainIds")
            rgb = bgr[:, :, ::-1]
            tiles = [rgb] + [visualize.overlay(rgb, p) for p in preds] + [visualize.colorize(truth)]
            strip = np.concatenate(tiles, axis=1)
            visualize.write_png(folder / f"sample_{i}.png", strip)  # RGB in, atomic
    finally:
        for engine in engines:
            engine.close()
    return len(samples)
