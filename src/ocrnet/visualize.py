"""Pictures of predictions and of run results: colour masks, overlays, panels, bar charts.

Images here are RGB uint8 (H, W, 3), label maps (H, W) train ids; convert with
`img[:, :, ::-1]` at the cv2 boundary (cv2 reads and writes BGR). Plots use matplotlib's
object API on an Agg canvas, imported lazily: no display, no global backend switch.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocrnet.data.cityscapes import CLASSES, PALETTE

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def palette_lut(palette: Sequence[Sequence[int]] = PALETTE) -> np.ndarray:
    """(256, 3) uint8 lookup table: row i is class i's RGB colour; every other id is black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut


_LUT = palette_lut()


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """(H, W) train ids -> (H, W, 3) RGB uint8 in the Cityscapes palette; 255 (ignore) is black.

    Ids without a palette entry (19..254) are black too, like ignored pixels.
    """
    labels = np.asarray(labels)
    if labels.dtype != np.uint8:
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"expected integer class ids, got {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError("class ids must be within 0..255")
        labels = labels.astype(np.uint8)
    lut = _LUT if palette is None else palette_lut(palette)
    return lut[labels]


def overlay(
    image_rgb: np.ndarray,
    labels: np.ndarray,
    opacity: float = 0.5,
    palette: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Blend the colour mask over the image: `round_half_up((1 - a) * image + a * colour)`.

    Ignored pixels (255, and ids without a colour) keep the image as it is, so unlabelled areas
    are not darkened towards black.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be within 0..1, got {opacity}")
    if image_rgb.shape[:2] != labels.shape[:2] or image_rgb.ndim != 3:
        raise ValueError(f"image {image_rgb.shape} and labels {labels.shape} must share H, W")
    color = colorize(labels, palette)
    num_colors = len(PALETTE if palette is None else palette)
    blended = image_rgb.astype(np.float32) * (1.0 - opacity) + color.astype(np.float32) * opacity
    out = np.floor(blended + 0.5).astype(np.uint8)
    keep = labels >= num_colors
    out[keep] = image_rgb[keep]
    return out


def legend(
    width: int,
    classes: Sequence[str] = CLASSES,
    palette: Sequence[Sequence[int]] = PALETTE,
    *,
    cell: tuple[int, int] = (150, 20),
) -> np.ndarray:
    """A white RGB strip `width` pixels wide: one colour swatch and name per class, in rows."""
    cell_w, cell_h = cell
    cols = max(1, width // cell_w)
    rows = math.ceil(len(classes) / cols)
    strip = np.full((rows * cell_h + 4, width, 3), 255, dtype=np.uint8)
    swatch = cell_h - 6
    for i, (name, color) in enumerate(zip(classes, palette, strict=True)):
        x, y = (i % cols) * cell_w + 4, (i // cols) * cell_h + 4
        cv2.rectangle(strip, (x, y), (x + swatch, y + swatch), tuple(int(c) for c in color), -1)
        cv2.rectangle(strip, (x, y), (x + swatch, y + swatch), (0, 0, 0), 1)
        cv2.putText(strip, name, (x + swatch + 5, y + swatch - 2), _FONT, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return strip


def side_by_side(
    *panels: np.ndarray,
    titles: Sequence[str] | None = None,
    gap: int = 4,
    with_legend: bool = False,
) -> np.ndarray:
    """Panels of one height in a row, e.g. `side_by_side(image, pred, gt, titles=[...])`.

    A panel is an RGB image (H, W, 3) or a label map (H, W), which is colourised. `titles`
    adds a caption band above each panel; `with_legend` adds the class legend below.
    """
    if not panels:
        raise ValueError("side_by_side needs at least one panel")
    if titles is not None and len(titles) != len(panels):
        raise ValueError(f"{len(panels)} panels but {len(titles)} titles")
    rgb = [colorize(p) if p.ndim == 2 else p for p in panels]
    height = rgb[0].shape[0]
    if any(p.shape[0] != height for p in rgb):
        raise ValueError(f"panels must share a height, got {[p.shape[0] for p in rgb]}")
    band = 22 if titles else 0
    width = sum(p.shape[1] for p in rgb) + gap * (len(rgb) - 1)
    canvas = np.full((band + height, width, 3), 255, dtype=np.uint8)
    x = 0
    for i, p in enumerate(rgb):
        canvas[band:, x : x + p.shape[1]] = p
        if titles:
            cv2.putText(canvas, titles[i], (x + 4, 16), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        x += p.shape[1] + gap
    if with_legend:
        canvas = np.concatenate([canvas, legend(width)], axis=0)
    return canvas


def bar_chart(
    rows: Sequence[Mapping[str, Any]],
    metric_keys: Sequence[str],
    out_png: str | os.PathLike[str],
    *,
    label_key: str = "precision",
    titles: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path:
    """One bar panel per metric, one bar per row: e.g. mIoU and images/s per precision.

    `rows` are dicts such as `{"precision": "int8", "mIoU": 80.1, "throughput_ips": 12.3}`;
    bars are labelled by `row[label_key]`, panels titled by `titles[key]` (default: the key).
    Missing or NaN values leave the bar out and say "n/a". The PNG is written atomically.
    """
    from matplotlib.figure import Figure  # lazy: matplotlib costs ~0.3 s to import

    if not rows or not metric_keys:
        raise ValueError("bar_chart needs at least one row and one metric key")
    names = [str(r[label_key]) for r in rows]  # a missing label is a bug: never index numbers
    fig = Figure(figsize=(4.2 * len(metric_keys), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metric_keys), squeeze=False)[0]
    colors = [f"C{i % 10}" for i in range(len(rows))]
    for ax, key in zip(axes, metric_keys, strict=True):
        values = [_number(r.get(key)) for r in rows]
        heights = [0.0 if math.isnan(v) else v for v in values]
        bars = ax.bar(range(len(rows)), heights, color=colors)
        ax.bar_label(bars, labels=["n/a" if math.isnan(v) else f"{v:.4g}" for v in values],
                     padding=2, fontsize=8)
        ax.set_xticks(range(len(rows)), names)
        ax.set_title((titles or {}).get(key, key))
        ax.margins(y=0.15)  # room for the value labels above the tallest bar
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save_figure(fig, out_png)


def precision_chart(rows: Sequence[Mapping[str, Any]], out_png: str | os.PathLike[str], *,
                    max_drop: float | None = None, title: str = "") -> Path:
    """`ocrnet run`'s summary: ΔmIoU vs the reference with its 95% interval, and speed-up.

    `rows` are the run report's result rows (`model`, `delta_mIoU`, `delta_ci` [low, high] or
    None, `ratio_to_fp32_eager`), the reference first. Models are rows of a horizontal chart,
    so their names never overlap however many there are; ΔmIoU is drawn as a point with its
    interval around zero (absolute mIoU bars near 86 would all look the same). The PNG is
    written atomically.
    """
    from matplotlib.figure import Figure  # lazy: matplotlib costs ~0.3 s to import

    if not rows:
        raise ValueError("precision_chart needs at least one row")
    names = [str(r["model"]) for r in rows]
    ys = list(range(len(rows)))[::-1]  # the reference on top
    fig = Figure(figsize=(11, 1.6 + 0.45 * len(rows)), layout="constrained")
    ax_d, ax_s = fig.subplots(1, 2, sharey=True, width_ratios=(1.2, 1))
    for y, r in zip(ys, rows, strict=True):
        delta, ci = _number(r.get("delta_mIoU")), r.get("delta_ci")
        if ci:
            over = max_drop is not None and ci[0] < -max_drop  # the run's gate trips on it
            ax_d.errorbar(delta, y, xerr=[[delta - ci[0]], [ci[1] - delta]], fmt="o",
                          color="C3" if over else "C0", capsize=4)
            ax_d.annotate(f"{delta:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]", (ci[1], y),
                          xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
        elif not math.isnan(delta):
            ax_d.plot(delta, y, "D", color="0.4")
            ax_d.annotate("reference" if delta == 0 else f"{delta:+.3f}", (delta, y),
                          xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
    ax_d.axvline(0, color="0.3", lw=0.8)
    if max_drop is not None:
        ax_d.axvline(-max_drop, color="C3", ls="--", lw=1, label=f"budget -{max_drop}")
        ax_d.legend(loc="lower left", fontsize=8)
    ax_d.set_yticks(ys, names)
    ax_d.set_xlabel("ΔmIoU vs reference (mIoU points), 95% paired bootstrap interval")
    ax_d.set_title("accuracy cost")
    ax_d.margins(x=0.45)
    ax_d.grid(axis="x", alpha=0.3)
    speed = [_number(r.get("ratio_to_fp32_eager")) for r in rows]
    bars = ax_s.barh(ys, [0.0 if math.isnan(v) else v for v in speed],
                     color=[f"C{i % 10}" for i in range(len(rows))])
    ax_s.bar_label(bars, labels=["n/a" if math.isnan(v) else f"{v:.2f}x" for v in speed],
                   padding=3, fontsize=8)
    ax_s.axvline(1, color="0.3", lw=0.8)
    ax_s.set_xlabel("throughput vs PyTorch eager fp32 (x)")
    ax_s.set_title("speed-up")
    ax_s.margins(x=0.15)
    ax_s.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save_figure(fig, out_png)


def benchmark_plot(results: Sequence[Mapping[str, Any]], out_png: str | os.PathLike[str], *,
                   title: str = "") -> Path:
    """Latency distribution per model x batch, and throughput against batch size.

    `results` are benchmark result rows as in `BenchReport.to_json()["results"]` (model, batch,
    latency_samples_ms, throughput_ips, optional throughput_ips_streams and streams). The PNG is
    written atomically.
    """
    from matplotlib.figure import Figure  # lazy: matplotlib costs ~0.3 s to import

    fig = Figure(figsize=(13, 4.8), layout="constrained")
    ax_lat, ax_tp = fig.subplots(1, 2)
    labels = [f"{r['model']}\nbatch {r['batch']}" for r in results]
    ax_lat.boxplot([r.get("latency_samples_ms") or [math.nan] for r in results], whis=(1, 99),
                   showfliers=True, showmeans=True)
    ax_lat.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=20)
    ax_lat.set_ylabel("latency per call (ms)")
    ax_lat.set_title("latency (box: p25-p75, whiskers: p1-p99, ▲ mean)")
    for name in dict.fromkeys(r["model"] for r in results):
        rs = [r for r in results if r["model"] == name]
        batches = [r["batch"] for r in rs]
        line, = ax_tp.plot(batches, [r["throughput_ips"] for r in rs], "o-", label=name)
        if any(r.get("throughput_ips_streams") for r in rs):
            ax_tp.plot(batches, [r.get("throughput_ips_streams") for r in rs], "s--",
                       color=line.get_color(), label=f"{name} ({rs[0].get('streams')} streams)")
    ax_tp.set_xscale("log", base=2)
    batches = sorted({r["batch"] for r in results})
    ax_tp.set_xticks(batches, [str(b) for b in batches])
    ax_tp.minorticks_off()
    ax_tp.set(xlabel="batch size", ylabel="throughput (images/s)", title="throughput vs batch")
    ax_tp.legend(fontsize=7)
    ax_tp.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save_figure(fig, out_png)


def _save_figure(fig: Any, out_png: str | os.PathLike[str]) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, buf.getvalue())
    return out


# --- files -----------------------------------------------------------------------------------
def write_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write a PNG atomically: (H, W, 3) arrays are RGB, (H, W) arrays are written as they are.

    The file appears complete or not at all (temp name in the same folder, then rename), so an
    interrupted run never leaves a truncated PNG that a later step would trust.
    """
    path = Path(path)
    write_bytes_atomic(path, encode_png(image, what=str(path)))
    return path


def encode_png(image: np.ndarray, *, what: str = "") -> bytes:
    """The PNG bytes `write_png` writes: (H, W, 3) arrays are RGB, (H, W) written as they are.

    One encoder for files and HTTP answers, so `ocrnet serve` returns exactly predict's bytes.
    """
    if image.ndim == 3:
        image = np.ascontiguousarray(image[:, :, ::-1])  # cv2 encodes BGR
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        where = f" for {what}" if what else ""
        raise ValueError(f"cannot encode {image.dtype} {image.shape} as PNG{where}")
    return buf.tobytes()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`path.write_bytes(data)`, but whole or not at all (`ocrnet.fileio.atomic_write_bytes`)."""
    from ocrnet.fileio import atomic_write_bytes

    atomic_write_bytes(path, data)


def _number(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan
