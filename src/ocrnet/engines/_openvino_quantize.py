"""OpenVINO int8 through NNCF: plain post-training quantization, or within an mIoU budget.

`quantize` is `nncf.quantize` with OCRNet's sensitive parts left in float. `quantize_within`
is `nncf.quantize_with_accuracy_control`: it quantizes, measures mIoU on held-out labelled
images of the calibration split (exact mIoU from summed confusion matrices, one image in memory
at a time), and reverts the quantizers that cost the most until the drop is within budget.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ocrnet.errors import OcrnetError
from ocrnet.quantize import DEFAULT_KEEP_FLOAT, pick_sensitive, summary_of
from ocrnet.quiet import quiet_dependencies


def ov_nodes(model: Any) -> list[tuple[str, str, Any]]:
    """(name, kind, out channels) of the model's convolutions, matmuls and softmaxes."""
    kinds = {"Convolution": "conv", "MatMul": "matmul", "Softmax": "softmax"}
    out = []
    for op in model.get_ordered_ops():
        kind = kinds.get(op.get_type_name())
        if kind:
            out_ch = op.input_value(1).get_partial_shape()[0].get_length() \
                if kind == "conv" else None
            out.append((op.get_friendly_name(), kind, out_ch))
    return out


def _common(model: Any, calibration: Any, calib_method: str, bias_correction: str,
            keep_float: Sequence[str], num_classes: int) -> tuple[dict[str, Any], list[str]]:
    import nncf

    if calibration is None:
        raise OcrnetError("int8 needs calibration images (--calib-dir)")
    keep = pick_sensitive(ov_nodes(model), keep_float, num_classes)
    count = len(calibration) if hasattr(calibration, "__len__") else 300
    kwargs = {"preset": nncf.QuantizationPreset(calib_method), "subset_size": count,
              "fast_bias_correction": bias_correction == "fast",
              "ignored_scope": nncf.IgnoredScope(names=keep) if keep else None}
    return kwargs, keep


def quantize(model: Any, calibration: Iterable[np.ndarray] | None, *,
             calib_method: str = "mixed", bias_correction: str = "fast",
             keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT, num_classes: int = 19
             ) -> tuple[Any, dict[str, Any]]:
    """`nncf.quantize` on an OpenVINO model; returns it and the calibration summary."""
    import nncf

    kwargs, keep = _common(model, calibration, calib_method, bias_correction, keep_float,
                           num_classes)
    with quiet_dependencies():  # after `import nncf`: its logger exists now
        quantized = nncf.quantize(model, nncf.Dataset(calibration), **kwargs)
    summary = {"tool": f"nncf {nncf.__version__}", "algorithm": "nncf.quantize",
               "preset": calib_method, "bias_correction": bias_correction,
               "keep_float": list(keep_float), "kept_nodes": keep, **summary_of(calibration)}
    return quantized, summary


# --- within an mIoU budget -------------------------------------------------------------------
def miou_validator(num_classes: int) -> Any:
    """NNCF's `validation_fn`: (compiled model, (image, label) items) -> (mIoU %, per image).

    The mIoU is exact: per-image confusion matrices summed, then IoU per class, not a mean of
    per-image scores. Predictions are brought to the label's size by nearest neighbour (labels
    only: the graph may have no logits); only one image's prediction is alive at a time.
    """
    from ocrnet.data.transforms import logits_to_labels, resize_labels
    from ocrnet.metrics import ConfusionMatrix

    def validate(compiled: Any, items: Iterable[tuple[np.ndarray, np.ndarray]]
                 ) -> tuple[float, list[float]]:
        total = ConfusionMatrix(num_classes)
        per_image: list[float] = []
        names = {name for out in compiled.outputs for name in out.get_names()}
        for x, label in items:
            result = compiled(x)
            if "labels" in names:
                pred = np.asarray(result["labels"])[0]
            elif "lowres" in names:  # `--outputs lowres`: labels at the input size, as engines
                pred = logits_to_labels(np.asarray(result["lowres"])[0], x.shape[-2:])
            else:
                pred = np.asarray(result["logits"])[0].argmax(0).astype(np.uint8)
            one = ConfusionMatrix(num_classes)
            one.update(resize_labels(pred, label.shape), label)
            total.merge(one)
            score = one.results().miou
            per_image.append(0.0 if np.isnan(score) else 100.0 * score)
        miou = total.results().miou
        return (0.0 if np.isnan(miou) else 100.0 * miou), per_image

    return validate


class _RevertLog(logging.Handler):
    """Collects the names NNCF logs as "Reverted N operations to the floating-point precision".

    NNCF 3.x has no API that returns them: the restorer's report object is local to its
    `_apply`, and only its log lines name the operations.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reverted: list[str] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.lines.append(text.splitlines()[0] if text else "")
        if text.startswith("Reverted "):
            self.reverted += [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]


def quantize_within(model: Any, calibration: Iterable[np.ndarray] | None,
                    validation: Sequence[tuple[np.ndarray, np.ndarray]], *, max_drop: float,
                    calib_method: str = "mixed", bias_correction: str = "fast",
                    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT, num_classes: int = 19,
                    max_iterations: int | None = None, hint: str = "f32"
                    ) -> tuple[Any, dict[str, Any]]:
    """`nncf.quantize_with_accuracy_control` with an absolute mIoU budget in points.

    `validation` holds (1x3xHxW image, HxW train-id label) pairs from the calibration split,
    disjoint from the calibration images. The summary records the budget, the measured float
    and int8 mIoU on those images, the drop, and the operations reverted to float. NNCF
    searches with an f32 remainder; the final int8 score is measured under `hint` (the
    package's inference precision), so an int8-bf16 package reports what it will run.
    """
    import nncf
    from nncf.common.logging import nncf_logger
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    if not validation:
        raise OcrnetError("accuracy control needs held-out labelled images (--holdout-count)")
    kwargs, keep = _common(model, calibration, calib_method, bias_correction, keep_float,
                           num_classes)
    validate = miou_validator(num_classes)
    log = _RevertLog()
    nncf_logger.addHandler(log)
    restorer = AdvancedAccuracyRestorerParameters(
        ranking_subset_size=len(validation), num_ranking_workers=1,
        **({"max_num_iterations": max_iterations} if max_iterations else {}))
    try:
        with quiet_dependencies():
            quantized = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(calibration), nncf.Dataset(validation, lambda item: item[0]),
                validate, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
                advanced_accuracy_restorer_parameters=restorer, **kwargs)
    finally:
        nncf_logger.removeHandler(log)
    measured = _measure(model, quantized, validation, validate, hint)
    summary = {"tool": f"nncf {nncf.__version__}",
               "algorithm": "nncf.quantize_with_accuracy_control",
               "preset": calib_method, "bias_correction": bias_correction,
               "keep_float": list(keep_float), "kept_nodes": keep, **summary_of(calibration),
               "accuracy_control": {"max_drop": max_drop, "metric": "mIoU (%) on held-out "
                                    "calibration-split images, summed confusion matrices",
                                    "holdout_count": len(validation), **measured,
                                    "met": measured["drop"] <= max_drop,
                                    "reverted_ops": log.reverted}}
    return quantized, summary


def _measure(model: Any, quantized: Any, validation: Sequence[Any], validate: Any,
             hint: str) -> dict[str, Any]:
    """Float (f32) and final int8 (under `hint`) mIoU on the held-out images."""
    import openvino as ov

    core = ov.Core()
    scores = []
    for m, h in ((model, "f32"), (quantized, hint)):
        compiled = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": h})
        scores.append(validate(compiled, validation)[0])
    return {"float_mIoU": round(scores[0], 4), "int8_mIoU": round(scores[1], 4),
            "drop": round(scores[0] - scores[1], 4), "int8_hint": hint}
