"""int8 post-training quantization, the backend-neutral part: calibration images, held-out
labelled images for accuracy control, option checks, and which nodes are OCRNet's sensitive parts.

Calibration images come from a Cityscapes-layout root's train split (never val: tuning on the
evaluation split inflates its score), preprocessed with `ocrnet.data.transforms` exactly as
evaluation does, and are read from disk one at a time on every pass. Each backend's own
quantizer lives with it (`ocrnet.engines._openvino_quantize`: NNCF;
`ocrnet.engines._onnxruntime_quantize`: ORT's QDQ), and declares its methods in
`Engine.calib_methods`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.data.select import pick_evenly
from ocrnet.errors import DataError, OcrnetError

#: Parts of OCRNet that `keep_float` can leave unquantized.
SENSITIVE_PARTS = ("first_conv", "attention", "classifiers")
#: The default, chosen by measurement (see docs in build's help and the issue report).
DEFAULT_KEEP_FLOAT: tuple[str, ...] = ("attention",)
BIAS_CORRECTION = ("fast", "full")


# --- calibration data ----------------------------------------------------------------------
def calibration_files(root: str | os.PathLike[str], *, split: str = "train", count: int = 32
                      ) -> list[Path]:
    """`count` images spread evenly over the split's sorted list (deterministic)."""
    from ocrnet.data.cityscapes import discover

    if count < 1:
        raise OcrnetError(f"--calib-count must be at least 1, got {count}")
    if split == "val":
        raise OcrnetError("calibrating on the val split would tune int8 on the images it is "
                          "evaluated on; use --calib-split train")
    from ocrnet.data.transforms import read_image

    samples = discover(root, split, labels_required=False)
    paths = [s.image for s in samples]
    chosen = pick_evenly(paths, count)
    for path in chosen:  # fail before the (long) build, not in the middle of it
        read_image(path)
    return chosen


class CalibrationImages:
    """Re-iterable (batch, 3, H, W) float32 batches, decoded and preprocessed on every pass.

    `size` (H, W) is the package's static input size; images are fitted to it with the eval
    keep-ratio resize, and an image whose aspect ratio cannot fit exactly is an error. `batch`
    is the package's static batch: consecutive images are stacked, and the last batch is
    filled up from the first images (a static graph takes nothing smaller).
    """

    def __init__(self, files: Sequence[Path], size: Sequence[int | None] = (None, None),
                 batch: int = 1) -> None:
        self.files = list(files)
        self.size = tuple(size)
        self.batch = max(1, int(batch))

    def __len__(self) -> int:
        return -(-len(self.files) // self.batch)

    def _images(self) -> Iterator[np.ndarray]:
        from ocrnet.data.transforms import DEFAULT_SCALE, preprocess, read_image

        h, w = self.size
        scale = (max(h, w), min(h, w)) if h and w else DEFAULT_SCALE
        for path in self.files:
            x = preprocess(read_image(path), scale)
            if h and w and x.shape[1:] != (h, w):
                raise DataError(f"calibration image {path} resizes to {x.shape[1]}x{x.shape[2]}, "
                                f"not the package's {h}x{w}: use images of the same aspect "
                                "ratio or build with --dynamic")
            yield x

    def __iter__(self) -> Iterator[np.ndarray]:
        group: list[np.ndarray] = []
        first: list[np.ndarray] = []
        for x in self._images():
            group.append(x)
            if len(first) < self.batch:
                first.append(x)
            if len(group) == self.batch:
                yield np.stack(group)
                group = []
        if group:
            yield np.stack(group + first[: self.batch - len(group)])

    def summary(self) -> dict[str, Any]:
        return {"count": len(self.files), "files": [p.name for p in self.files],
                "preprocess": "ocrnet.data.transforms.preprocess (eval pipeline)",
                "size": list(self.size)}


def holdout_samples(root: str | os.PathLike[str], *, split: str = "train", count: int = 16,
                    exclude: Sequence[Path] = ()) -> list[Any]:
    """`count` labelled samples of the calibration split, none of them a calibration image.

    Accuracy control scores candidate int8 models on these: held out from calibration so the
    score is not the quantizer's own training data, and never from val, the reported split.
    """
    from ocrnet.data.cityscapes import discover

    if count < 1:
        raise OcrnetError(f"--holdout-count must be at least 1, got {count}")
    if split == "val":
        raise OcrnetError("accuracy control on the val split would tune int8 on the images it "
                          "is evaluated on; use --calib-split train")
    taken = {Path(p) for p in exclude}
    samples = [s for s in discover(root, split, labels_required=True) if s.image not in taken]
    if not samples:
        raise DataError(f"{root} has no labelled {split} images left after the {len(taken)} "
                        "calibration images; accuracy control needs held-out labelled images "
                        "(lower --calib-count or add images)")
    return pick_evenly(samples, count)


class HeldOutImages:
    """(1x3xHxW float32 image, HxW train-id label) pairs, fitted to the package's input size.

    Held in memory on purpose: accuracy control scores every candidate model on the same
    items, and a few small preprocessed images are cheaper than decoding them again each time.
    """

    def __init__(self, samples: Sequence[Any], size: Sequence[int | None] = (None, None)) -> None:
        from ocrnet.data.cityscapes import read_label

        batches = CalibrationImages([s.image for s in samples], size, batch=1)
        self.items = [(x, read_label(s.label, s.label_format or "trainIds"))
                      for x, s in zip(batches, samples, strict=True)]
        self.names = [s.image.name for s in samples]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.items[i]


def check_int8_options(backend: str | Any, *, calib_method: str | None = None,
                       bias_correction: str = "fast", keep_float: Sequence[str] | None = None
                       ) -> dict[str, Any]:
    """Validate int8 options for `backend` (a name or an `Engine` class) up front, with
    did-you-mean; fill in defaults. The methods are the backend's `calib_methods`."""
    if isinstance(backend, str):
        # Resolved lazily: the engines sit above this module (they import it), and the name
        # form is public API that predates `Engine.calib_methods`.
        from ocrnet.engines import get_backend

        backend = get_backend(backend)
    methods: tuple[str, ...] = tuple(backend.calib_methods)
    method = (calib_method or methods[0]).lower() if methods else None
    if method not in methods:
        raise OcrnetError(f"unknown --calib-method {calib_method!r} for {backend.backend}"
                          f"{_did_you_mean(method, methods)}; valid: {', '.join(methods)}")
    if bias_correction not in BIAS_CORRECTION:
        raise OcrnetError(f"unknown --bias-correction {bias_correction!r}"
                          f"{_did_you_mean(bias_correction, BIAS_CORRECTION)}; "
                          f"valid: {', '.join(BIAS_CORRECTION)}")
    keep = tuple(DEFAULT_KEEP_FLOAT if keep_float is None else
                 (k for k in keep_float if k != "none"))
    for part in keep:
        if part not in SENSITIVE_PARTS:
            raise OcrnetError(f"unknown --keep-float part {part!r}"
                              f"{_did_you_mean(part, SENSITIVE_PARTS)}; valid: "
                              f"{', '.join(SENSITIVE_PARTS)} or none")
    return {"calib_method": method, "bias_correction": bias_correction, "keep_float": keep}


def _did_you_mean(word: str | None, valid: Sequence[str]) -> str:
    hint = difflib.get_close_matches(str(word), list(valid), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


# --- which nodes are the sensitive parts ---------------------------------------------------
def pick_sensitive(nodes: list[tuple[str, str, Any]], keep: Sequence[str], num_classes: int
                   ) -> list[str]:
    """Names of the (name, op type, weight shape | first-input-is-graph-input) nodes to keep."""
    names: list[str] = []
    convs = [n for n in nodes if n[1] == "conv"]
    if "first_conv" in keep and convs:
        names.append(convs[0][0])
    if "classifiers" in keep:
        names += [n for n, _, out_ch in convs if out_ch == num_classes]
    if "attention" in keep:
        names += [n for n, kind, _ in nodes if kind in ("matmul", "softmax")]
    return names


def onnx_nodes(model: Any) -> list[tuple[str, str, Any]]:
    """(name, kind, out channels) of the graph's convolutions, matmuls and softmaxes."""
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    kinds = {"Conv": "conv", "MatMul": "matmul", "Softmax": "softmax"}
    return [(n.name, kinds[n.op_type], (weights.get(n.input[1]) or [None])[0]
             if n.op_type == "Conv" else None)
            for n in model.graph.node if n.op_type in kinds]


# The private names earlier releases (and their tests) used.
_pick, _onnx_nodes = pick_sensitive, onnx_nodes


def summary_of(calibration: Any) -> dict[str, Any]:
    """The calibration set's own summary (files, size), if it has one."""
    return calibration.summary() if hasattr(calibration, "summary") else {}


# --- memory-bounded groups of intermediate tensors (calibration histograms, explain) --------
def tensor_groups(tensors: list[str], infos: dict[str, Any], input_shape: tuple[int, ...],
            budget: int) -> Iterator[list[str]]:
    """Tensors in graph order, grouped so that each group's float32 bytes fit `budget`."""
    group: list[str] = []
    used = 0
    for name in tensors:
        dims = infos[name].type.tensor_type.shape.dim
        # Symbolic dims (dynamic graphs) are bounded by the input's own size.
        size = 4 * int(np.prod([d.dim_value if d.HasField("dim_value") else max(input_shape)
                                for d in dims] or [1]))
        if group and used + size > budget:
            yield group
            group, used = [], 0
        group.append(name)
        used += size
    if group:
        yield group
