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

from ocrnet.data.images import IMAGE_SUFFIXES as _IMAGE_SUFFIXES  # the one set
from ocrnet.engines import open_model
from ocrnet.engines.base import Engine
from ocrnet.errors import DataError, OcrnetError


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
        picks = np.linspace(0, len(files) - 1, num=min(count, len(files))).round().astype(int)
        files = [files[i] for i in dict.fromkeys(picks.tolist())]
    return files


def _reference_path(models: Sequence[Path], reference: Path | None) -> Path:
    if reference is not None:
        return reference
    for path in models:
        if path.is_file() and path.suffix in (".pth", ".pt"):
            return path
    from ocrnet.package import is_package, read_package, sha256_file

    for path in models:
        if is_package(path):
            src = read_package(path, verify=False).meta.get("source", {})
            # Built from a checkpoint, or from an ONNX export that recorded its checkpoint.
            ckpt = src if src.get("kind") == "checkpoint" else src.get("checkpoint") or {}
            cand = Path(ckpt.get("path", ""))
            if cand.is_file() and sha256_file(cand) == ckpt.get("sha256"):
                return cand
    raise OcrnetError("no PyTorch reference: pass --reference CHECKPOINT.pth (the packages' "
                      "recorded source checkpoint is missing or changed)")


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
                   reference: str | os.PathLike[str] | None = None, device: str = "cpu",
                   count: int | None = None, json_out: str | os.PathLike[str] | None = None
                   ) -> dict[str, Any]:
    """Compare each model with the PyTorch fp32 reference on the images under `images`."""
    from ocrnet.data.transforms import DEFAULT_SCALE, preprocess, read_image

    paths = [Path(m) for m in models if not isinstance(m, Engine)]
    ref_path = _reference_path(paths, Path(reference) if reference else None)
    files = image_files(images, count)
    ref = open_model(ref_path, device=device)
    engines: list[tuple[str, Engine, bool]] = []
    try:
        for m in models:
            if isinstance(m, Engine):
                engines.append((str(m.metadata.get("name", type(m).__name__)), m, False))
            else:
                engines.append((str(m), open_model(m, device=device), True))
        scale: Any = DEFAULT_SCALE
        for _, engine, _ in engines:
            shape = engine.metadata.get("input_shape") or []
            if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]):
                scale = (max(shape[2:]), min(shape[2:]))
                break
        tallies: list[_Tally] = []
        logits_ok = [True] * len(engines)
        for file in files:
            x = preprocess(read_image(file), scale)[None]
            want = ref.infer(x, return_logits=True)
            if not tallies:
                tallies = [_Tally(want.logits.shape[1]) for _ in engines]
            for i, (_, engine, _) in enumerate(engines):
                try:
                    got = engine.infer(x, return_logits=logits_ok[i])
                except OcrnetError:
                    if not logits_ok[i]:
                        raise
                    logits_ok[i] = False  # a labels-only model: compare labels
                    got = engine.infer(x)
                tallies[i].update(want.labels, want.logits, got.labels, got.logits)
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
              "models": rows}
    if json_out:
        from ocrnet.fileio import atomic_write_text

        atomic_write_text(json_out, json.dumps(report, indent=2) + "\n")
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table, one row per model."""
    head = f"{'model':<40} {'backend':<12} {'prec':<5} {'agree %':>8} {'mIoU %':>7} " \
           f"{'max|Δ|':>9} {'rel L2':>9}"
    lines = [f"reference: {report['reference']} on {report['images']} image(s)", head,
             "-" * len(head)]
    for r in report["models"]:
        max_abs = f"{r['logits_max_abs_diff']:.2e}" if "logits_max_abs_diff" in r else "-"
        rel = f"{r['logits_rel_l2']:.2e}" if "logits_rel_l2" in r else "-"
        lines.append(f"{r['model'][-40:]:<40} {r['backend'] or '-':<12} {r['precision'] or '-':<5}"
                     f" {100 * r['pixel_agreement']:>8.3f} {100 * r['mIoU_vs_reference']:>7.2f}"
                     f" {max_abs:>9} {rel:>9}")
    return "\n".join(lines)
