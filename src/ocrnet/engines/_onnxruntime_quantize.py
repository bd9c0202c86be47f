"""ONNX Runtime int8: streamed calibration statistics, then a QDQ graph from `quantize_static`.

ONNX Runtime's own calibration (`quantize_static` with a data reader) keeps every intermediate
tensor of every image in memory (~10 GB per 1024x2048 image for HRNet). We stream instead:
MinMax uses ORT's MinMaxCalibrater, whose graph reduces each tensor to min/max in-graph, fed one
image per `collect_data` call; Entropy/Percentile run the graph once per image per group of
tensors (groups sized to `memory_mb`) and merge each group into ORT's `HistogramCollector`.
The ranges go to ORT's calibration cache file and `quantize_static` builds the QDQ graph from it.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.errors import DataError, OcrnetError
from ocrnet.quantize import (
    DEFAULT_KEEP_FLOAT,
    onnx_nodes,
    pick_sensitive,
    summary_of,
    tensor_groups,
)


def quantize_static_qdq(src: str | os.PathLike[str], dst: str | os.PathLike[str],
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
    exclude = pick_sensitive(onnx_nodes(model), keep_float, num_classes)
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
            f"histograms per tensor group <= {memory_mb} MB", **summary_of(calibration)}


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
        for group in tensor_groups(tensors, infos, x.shape, memory_mb << 20):
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
