"""int8 post-training quantization: calibration images, sensitive parts, OpenVINO and ORT.

Calibration images come from a Cityscapes-layout root's train split (never val: tuning on the
evaluation split inflates its score), preprocessed with `ocrnet.data.transforms` exactly as
evaluation does, and are read from disk one at a time on every pass.

ONNX Runtime's own calibration (`quantize_static` with a data reader) keeps every intermediate
tensor of every image in memory (~10 GB per 1024x2048 image for HRNet). We stream instead:
MinMax uses ORT's MinMaxCalibrater, whose graph reduces each tensor to min/max in-graph, fed one
image per `collect_data` call; Entropy/Percentile run the graph once per image per group of
tensors (groups sized to `memory_mb`) and merge each group into ORT's `HistogramCollector`.
The ranges go to ORT's calibration cache file and `quantize_static` builds the QDQ graph from it.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.errors import DataError, OcrnetError

#: Parts of OCRNet that `keep_float` can leave unquantized.
SENSITIVE_PARTS = ("first_conv", "attention", "classifiers")
#: The default, chosen by measurement (see docs in build's help and the issue report).
DEFAULT_KEEP_FLOAT: tuple[str, ...] = ("attention",)
CALIB_METHODS = {"openvino": ("mixed", "performance"),
                 "onnxruntime": ("minmax", "entropy", "percentile")}
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
    picks = np.linspace(0, len(paths) - 1, num=min(count, len(paths))).round().astype(int)
    chosen = [paths[i] for i in dict.fromkeys(picks.tolist())]
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


def check_int8_options(backend: str, *, calib_method: str | None = None,
                       bias_correction: str = "fast", keep_float: Sequence[str] | None = None
                       ) -> dict[str, Any]:
    """Validate int8 options for `backend` up front, with did-you-mean; fill in defaults."""
    methods = CALIB_METHODS.get(backend, ())
    method = (calib_method or methods[0]).lower() if methods else None
    if method not in methods:
        raise OcrnetError(f"unknown --calib-method {calib_method!r} for {backend}"
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
def _pick(nodes: list[tuple[str, str, Any]], keep: Sequence[str], num_classes: int) -> list[str]:
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


def _onnx_nodes(model: Any) -> list[tuple[str, str, Any]]:
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    kinds = {"Conv": "conv", "MatMul": "matmul", "Softmax": "softmax"}
    return [(n.name, kinds[n.op_type], (weights.get(n.input[1]) or [None])[0]
             if n.op_type == "Conv" else None)
            for n in model.graph.node if n.op_type in kinds]


def _ov_nodes(model: Any) -> list[tuple[str, str, Any]]:
    kinds = {"Convolution": "conv", "MatMul": "matmul", "Softmax": "softmax"}
    out = []
    for op in model.get_ordered_ops():
        kind = kinds.get(op.get_type_name())
        if kind:
            out_ch = op.input_value(1).get_partial_shape()[0].get_length() \
                if kind == "conv" else None
            out.append((op.get_friendly_name(), kind, out_ch))
    return out


# --- OpenVINO via NNCF -----------------------------------------------------------------------
def quantize_openvino(model: Any, calibration: Iterable[np.ndarray] | None, *,
                      calib_method: str = "mixed", bias_correction: str = "fast",
                      keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT, num_classes: int = 19
                      ) -> tuple[Any, dict[str, Any]]:
    """`nncf.quantize` on an OpenVINO model; returns it and the calibration summary."""
    import nncf

    if calibration is None:
        raise OcrnetError("int8 needs calibration images (--calib-dir)")
    keep = _pick(_ov_nodes(model), keep_float, num_classes)
    count = len(calibration) if hasattr(calibration, "__len__") else 300
    quantized = nncf.quantize(
        model, nncf.Dataset(calibration),
        preset=nncf.QuantizationPreset(calib_method), subset_size=count,
        fast_bias_correction=bias_correction == "fast",
        ignored_scope=nncf.IgnoredScope(names=keep) if keep else None)
    summary = {"tool": f"nncf {nncf.__version__}", "algorithm": "nncf.quantize",
               "preset": calib_method, "bias_correction": bias_correction,
               "keep_float": list(keep_float), "kept_nodes": keep,
               **_summary(calibration)}
    return quantized, summary


def _summary(calibration: Any) -> dict[str, Any]:
    return calibration.summary() if hasattr(calibration, "summary") else {}


# --- ONNX Runtime QDQ ------------------------------------------------------------------------
def quantize_onnx_static(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                         calibration: Iterable[np.ndarray] | None, *,
                         calib_method: str = "minmax", keep_float: Sequence[str] =
                         DEFAULT_KEEP_FLOAT, num_classes: int = 19, memory_mb: int = 2048,
                         bias_correction: str = "fast") -> dict[str, Any]:
    """Calibrate with streamed statistics, then write a QDQ int8 graph (per-channel weights).

    `bias_correction` is an OpenVINO option, accepted and ignored here.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    if calibration is None:
        raise OcrnetError("int8 needs calibration images (--calib-dir)")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calib_method]
    model = onnx.shape_inference.infer_shapes(onnx.load(str(src)))
    exclude = _pick(_onnx_nodes(model), keep_float, num_classes)
    with tempfile.TemporaryDirectory(prefix="ocrnet-calib-") as tmp:
        inferred = Path(tmp) / "model.onnx"
        onnx.save(model, inferred)
        if method is CalibrationMethod.MinMax:
            ranges, images = _minmax_ranges(inferred, calibration, Path(tmp))
        else:
            ranges, images = _histogram_ranges(inferred, model, calibration, calib_method,
                                               memory_mb)
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, cache)
        # uint8 activations x int8 weights is the product VNNI computes (vpdpbusd). With int8
        # activations ORT 1.32 left 181 of OCRNet's 316 convolutions as float Conv between
        # Q/DQ pairs (measured: as slow as fp32); with uint8 all 316 became QLinearConv, 2.9x
        # faster than fp32. Without VNNI, u8 x s8 pairs can saturate int16: reduce the range.
        reduce_range = not _has_vnni()
        quantize_static(
            inferred, dst, calibration_data_reader=None, quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            reduce_range=reduce_range, calibrate_method=method,
            calibration_cache_path=cache, nodes_to_exclude=exclude)
    import onnxruntime

    return {"tool": f"onnxruntime {onnxruntime.__version__}", "algorithm": "quantize_static QDQ",
            "calib_method": calib_method, "per_channel": True, "activations": "uint8",
            "weights": "int8", "reduce_range": reduce_range,
            "keep_float": list(keep_float), "kept_nodes": exclude, "images_seen": images,
            "streaming": "minmax in-graph reduce" if calib_method == "minmax" else
            f"histograms per tensor group <= {memory_mb} MB", **_summary(calibration)}


def _has_vnni() -> bool:
    from ocrnet.machine import cpu_flags

    return bool({"avx512_vnni", "avx_vnni"} & cpu_flags())


class _OneImage:
    """An ORT CalibrationDataReader yielding one image, so each collect_data call is small."""

    def __init__(self, x: np.ndarray) -> None:
        self.x: np.ndarray | None = x

    def get_next(self) -> dict[str, np.ndarray] | None:
        x, self.x = self.x, None
        return None if x is None else {"input": x}


def _minmax_ranges(path: Path, calibration: Iterable[np.ndarray], tmp: Path) -> tuple[Any, int]:
    from onnxruntime.quantization.calibrate import MinMaxCalibrater

    # Not max_intermediate_outputs=1: ORT 1.32 clears the batch before folding it in. Each
    # collect_data call already folds its images into the running range and clears them.
    calibrator = MinMaxCalibrater(path, augmented_model_path=tmp / "augmented.onnx")
    calibrator.augment_graph()
    calibrator.create_inference_session()
    images = 0
    for x in calibration:
        calibrator.collect_data(_OneImage(x))  # folds into running min/max every image
        images += 1
    if not images:
        raise DataError("no calibration image could be read")
    return calibrator.compute_data(), images


def _histogram_ranges(path: Path, model: Any, calibration: Iterable[np.ndarray], method: str,
                      memory_mb: int) -> tuple[Any, int]:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        HistogramCollector,
        TensorsData,
    )
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    op_types = set(QDQRegistry) | set(QLinearOpsRegistry)
    infos = {v.name: v for v in list(model.graph.value_info) + list(model.graph.input)
             + list(model.graph.output)}
    initializers = {i.name for i in model.graph.initializer}
    tensors = list(dict.fromkeys(
        name for node in model.graph.node if node.op_type in op_types
        for name in (*node.input, *node.output)
        if name in infos and name not in initializers
        and infos[name].type.tensor_type.elem_type == onnx.TensorProto.FLOAT))
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    outputs = {o.name for o in augmented.graph.output}
    augmented.graph.output.extend(infos[t] for t in tensors if t not in outputs)
    session = ort.InferenceSession(augmented.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    collector = HistogramCollector(method=method, symmetric=method == "percentile",
                                   num_bins=128 if method == "entropy" else 2048,
                                   num_quantized_bins=128, percentile=99.999, scenario="same")
    images = 0
    for x in calibration:
        for group in _groups(tensors, infos, x.shape, memory_mb << 20):
            values = session.run(group, {"input": x})
            with contextlib.redirect_stdout(io.StringIO()):  # ORT prints per call
                collector.collect({name: [v] for name, v in zip(group, values, strict=True)})
        images += 1
    if not images:
        raise DataError("no calibration image could be read")
    cal = {"entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}[method]
    with contextlib.redirect_stdout(io.StringIO()):
        result = collector.compute_collection_result()
    return TensorsData(cal, result), images


def _groups(tensors: list[str], infos: dict[str, Any], input_shape: tuple[int, ...],
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
