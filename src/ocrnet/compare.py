"""`ocrnet compare`: how faithfully engines reproduce the PyTorch fp32 reference, without labels.

Every model sees the same preprocessed images (the eval pipeline, fitted to the first static
model's input size). Per model: pixel agreement of its labels with the reference's, the mIoU of
its labels scored against the reference labels, and, where the model gives logits, the largest
absolute logit difference and the relative L2 error over all images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet import defaults
from ocrnet.data.images import IMAGE_SUFFIXES as _IMAGE_SUFFIXES  # the one set
from ocrnet.data.select import pick_evenly
from ocrnet.engines import open_model
from ocrnet.engines.base import Engine, InferResult
from ocrnet.errors import DataError, OcrnetError
from ocrnet.work.modes import Mode, aug_probs, image_logits, static_size


def image_files(root: str | os.PathLike[str], count: int | None = None) -> list[Path]:
    """Image files under `root` (recursive, sorted); `count` spread evenly over them."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"no image folder at {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(sorted(_IMAGE_SUFFIXES))}) under {root}")
    if count:
        files = pick_evenly(files, count)
    return files


def _reference_path(models: Sequence[Path], reference: Path | None,
                    images: str | os.PathLike[str]) -> Path:
    """The fp32 reference: `reference`, else a checkpoint the user listed among the models.

    Only files the user names are read: a package's manifest may name its source checkpoint,
    but that path is only suggested (reading it meant hashing whatever file the manifest
    names, a 4 GB one included), never opened.
    """
    if reference is not None:
        return reference
    for path in models:
        if path.is_file() and path.suffix in (".pth", ".pt"):
            return path
    import shlex

    suggested = _recorded_source(models)
    command = " ".join(shlex.quote(str(a)) for a in ("ocrnet", "compare", *models, "--images",
                                                     images, "--reference"))
    raise OcrnetError(f"compare needs the PyTorch fp32 checkpoint to compare against: "
                      f"{command} {shlex.quote(suggested) if suggested else 'CHECKPOINT.pth'}")


def _recorded_source(models: Sequence[Path]) -> str | None:
    """The checkpoint a package says it was built from, as a hint (not read, not hashed)."""
    from ocrnet.package import is_package, read_package

    for path in models:
        try:
            src = read_package(path, verify=False).meta.get("source", {}) \
                if is_package(path) else {}
        except OcrnetError:  # opening it says what is wrong, after this error is fixed
            continue
        ckpt = src if src.get("kind") == "checkpoint" else src.get("checkpoint") or {}
        if isinstance(ckpt, dict) and isinstance(ckpt.get("path"), str) and ckpt["path"]:
            return ckpt["path"]
    return None


class _Tally:
    def __init__(self, num_classes: int) -> None:
        from ocrnet.metrics import ConfusionMatrix

        self.matrix = ConfusionMatrix(num_classes)
        self.agree = self.pixels = 0
        self.max_abs = 0.0
        self.sq_diff = self.sq_ref = 0.0
        self.has_logits = True

    def update(self, ref_labels: np.ndarray, ref_logits: np.ndarray, labels: np.ndarray,
               logits: np.ndarray | None) -> None:
        self.matrix.update(labels, ref_labels)
        self.agree += int((labels == ref_labels).sum())
        self.pixels += labels.size
        if logits is None:
            self.has_logits = False
            return
        diff = logits.astype(np.float64) - ref_logits
        self.max_abs = max(self.max_abs, float(np.abs(diff).max()))
        self.sq_diff += float((diff * diff).sum())
        self.sq_ref += float((ref_logits.astype(np.float64) ** 2).sum())

    def row(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pixel_agreement": self.agree / max(self.pixels, 1),
                               "mIoU_vs_reference": self.matrix.results().miou}
        if self.has_logits:
            out["logits_max_abs_diff"] = self.max_abs
            out["logits_rel_l2"] = (self.sq_diff / self.sq_ref) ** 0.5 if self.sq_ref else 0.0
        return out


def compare_models(models: Sequence[str | os.PathLike[str] | Engine],
                   images: str | os.PathLike[str], *,
                   reference: str | os.PathLike[str] | None = None, device: str = defaults.DEVICE,
                   count: int | None = None, json_out: str | os.PathLike[str] | None = None,
                   trust_checkpoint: bool = False, trust_package: bool = False,
                   explain: bool = False, explain_dir: str | os.PathLike[str] | None = None,
                   top_k: int = 10, explain_images: int = 1, mode: str = defaults.MODE,
                   crop: Any = None, stride: Any = None, ratios: Sequence[float] | None = None,
                   flip: bool = False) -> dict[str, Any]:
    """Compare each model with the PyTorch fp32 reference on the images under `images`.

    `mode` (`crop`, `stride`, `ratios`, `flip`): `ocrnet.work.modes`, alike on the reference
    and every model; slide compares tiled logits, aug the merged softmax.

    `explain` adds, per model, label flips (class-to-class matrix, boundary vs interior
    rates), a heat-map of where they land and, for ONNX-based packages, the `top_k` layers
    adding the most error on the first `explain_images` images (`ocrnet.explain`); the
    heat-maps and `explain.md` go to `explain_dir` (default: `compare-explain`).
    """

    paths = [Path(m) for m in models if not isinstance(m, Engine)]
    ref_path = _reference_path(paths, Path(reference) if reference else None, images)
    files = image_files(images, count)
    trust = {"trust_checkpoint": trust_checkpoint, "trust_package": trust_package}
    ref = open_model(ref_path, device=device, **trust)
    engines: list[tuple[str, Engine, bool]] = []
    try:
        for m in models:
            if isinstance(m, Engine):
                engines.append((str(m.metadata.get("name", type(m).__name__)), m, False))
            else:
                engines.append((str(m), open_model(m, device=device, **trust), True))
        parsed, scale = _mode_for(Mode.parse(mode, crop=crop, stride=stride, ratios=ratios,
                                             flip=flip), [e for _, e, _ in engines], explain)
        tallies, flips, inputs = _run_all(ref, [e for _, e, _ in engines], files, scale,
                                          explain, explain_images, parsed)
    finally:
        ref.close()
        for _, engine, owned in engines:
            if owned:
                engine.close()
    rows = []
    for (name, engine, _), tally in zip(engines, tallies, strict=True):
        meta = engine.metadata
        rows.append({"model": name, "backend": meta.get("backend"),
                     "precision": meta.get("precision"), **tally.row()})
    report = {"reference": str(ref_path), "images": len(files), "device": device,
              **parsed.to_dict(), "models": rows}
    if explain:
        from ocrnet.explain import attach

        report["explain_markdown"] = str(attach(
            report, flips, ref_path, [None if isinstance(m, Engine) else Path(m) for m in models],
            inputs, Path(explain_dir or "compare-explain"), top_k=top_k))
    if json_out:
        from ocrnet.fileio import atomic_write_text

        atomic_write_text(json_out, json.dumps(report, indent=2) + "\n")
    return report


def _mode_for(mode: Mode, engines: list[Engine], explain: bool) -> tuple[Mode, Any]:
    """The mode checked for every model, and the scale all see: whole fits the first static
    model's input; slide's crop defaults to a static package's input, so the reference and
    dynamic models run the very same tiles."""
    if mode.name != "whole" and explain:
        raise OcrnetError("--explain runs --mode whole (its flips and layers are per input)")
    sizes = {static_size(e) for e in engines} - {None}
    if mode.name == "slide" and mode.crop is None and len(sizes) == 1:
        mode = Mode.parse("slide", crop=sizes.pop(), stride=mode.stride)
    resolved = [mode.for_engine(e) for e in engines]  # one-line errors (crop, aug on static)
    if mode.name != "whole":
        return resolved[0] if resolved else mode, defaults.SCALE
    return mode, next((e.native_scale for e in engines if e.native_scale), defaults.SCALE)


def _infer(engine: Engine, bgr: np.ndarray, x: np.ndarray, mode: Mode,
           logits: bool) -> InferResult:
    """One image through `engine` in `mode`: whole as is, slide's summed logits, aug's mean
    softmax (at the original size) in place of logits."""
    if mode.name == "whole":
        return engine.infer(x, return_logits=logits)
    if mode.name == "slide":
        out = image_logits(engine, x[0], mode)
    else:
        out = aug_probs(engine, bgr, mode.ratios, mode.flip)
    return InferResult(out.argmax(0)[None].astype(np.uint8), out[None])


def _run_all(ref: Engine, engines: list[Engine], files: list[Path], scale: Any, explain: bool,
             explain_images: int, mode: Mode) -> tuple[list[_Tally], list[Any], list[np.ndarray]]:
    """Every image through the reference and each engine: the tallies, the label flips
    (with `explain`), and the first `explain_images` inputs for the per-layer divergence."""
    from ocrnet.data.transforms import preprocess, read_image, resize
    from ocrnet.explain import FlipTally

    tallies: list[_Tally] = []
    flips: list[FlipTally] = []
    inputs: list[np.ndarray] = []
    logits_ok = [True] * len(engines)
    for file in files:
        bgr = read_image(file)
        x = preprocess(bgr, scale)[None]
        want = _infer(ref, bgr, x, mode, True)
        if not tallies:
            tallies = [_Tally(want.logits.shape[1]) for _ in engines]
            flips = [FlipTally(want.logits.shape[1]) for _ in engines]
        if explain and len(inputs) < explain_images:
            inputs.append(x)
        for i, engine in enumerate(engines):
            try:
                got = _infer(engine, bgr, x, mode, logits_ok[i])
            except OcrnetError:
                if not logits_ok[i]:
                    raise
                logits_ok[i] = False  # a labels-only model: compare labels
                got = _infer(engine, bgr, x, mode, False)
            tallies[i].update(want.labels, want.logits, got.labels, got.logits)
            if explain:
                flips[i].update(want.labels[0], got.labels[0],
                                np.ascontiguousarray(resize(bgr, scale)[:, :, ::-1]))
    return tallies, flips, inputs


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table, one row per model."""
    from ocrnet.tables import text_table

    def sci(r: dict[str, Any], key: str) -> str:
        return f"{r[key]:.2e}" if key in r else "-"

    rows = [[r["model"][-40:], r["backend"] or "-", r["precision"] or "-",
             f"{100 * r['pixel_agreement']:.3f}", f"{100 * r['mIoU_vs_reference']:.2f}",
             sci(r, "logits_max_abs_diff"), sci(r, "logits_rel_l2")] for r in report["models"]]
    head = ["model", "backend", "prec", "agree %", "mIoU %", "max|Δ|", "rel L2"]
    return (f"reference: {report['reference']} on {report['images']} image(s)\n"
            + text_table(head, rows, left=3))
