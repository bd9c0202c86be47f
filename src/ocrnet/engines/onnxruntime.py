"""ONNX Runtime: CPU execution provider, or CUDA when installed and asked for (never a fallback).

Package file: `model.onnx` (fp32 as exported; fp16 converted with float IO kept; int8 as a QDQ
graph with per-channel weights, see `ocrnet.quantize`). fp16 runs on CUDA only: ORT's x86 CPU
provider has no fp16 convolutions, it would wrap each one in casts and compute in fp32.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ocrnet.engines.base import (
    BuildOutput,
    BuildRequest,
    Engine,
    InferResult,
    check_input_shape,
    lowres_result,
    package_metadata,
)
from ocrnet.errors import OcrnetError
from ocrnet.package import INPUT_NAME, LOWRES
from ocrnet.precision import Precision

if TYPE_CHECKING:
    from ocrnet.package import Package

_FILE = "model.onnx"
# NNCF 3.4's ONNX backend does implement quantize_with_accuracy_control, but only over NNCF's
# own ONNX quantization: it would replace this backend's recipe (ORT's streamed calibration,
# uint8 activations x int8 per-channel weights, which is what makes every convolution run as
# QLinearConv) with a different graph than plain `--precision int8` builds. Refused, not faked.
_NO_ACCURACY_CONTROL = (
    "--max-drop is not available for onnxruntime: NNCF's ONNX backend has accuracy control, "
    "but only over its own quantization recipe, not this backend's ORT QDQ recipe (uint8 "
    "activations, streamed calibration); build --backend openvino --precision int8 "
    "--max-drop X instead")


def _session(path: Path, device: str, threads: int | None, profile: str | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile:  # ORT's profiler writes a Chrome trace of every node run (layer_profile)
        options.enable_profiling = True
        options.profile_file_prefix = profile
    if threads:
        options.intra_op_num_threads = int(threads)
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise OcrnetError(
                "device 'cuda' asked for, but this onnxruntime has no CUDAExecutionProvider "
                f"(it has {', '.join(ort.get_available_providers())}); install onnxruntime-gpu "
                "or use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": index}),
                                "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # ORT's pybind errors (InvalidProtobuf, Fail, ...): a bad file
        lines = [ln for ln in str(err).splitlines() if ln.strip()]
        reason = lines[0][:300] if lines else type(err).__name__
        raise OcrnetError(f"ONNX Runtime cannot load {path}: {reason}; rebuild or re-export "
                          "the model") from None
    if device.startswith("cuda") and "CUDAExecutionProvider" not in session.get_providers():
        raise OcrnetError("onnxruntime could not enable its CUDA provider (see its log above); "
                          "not falling back to the CPU")
    return session


class OnnxRuntimeEngine(Engine):
    """An `onnxruntime.InferenceSession` over the package's `model.onnx`."""

    backend: ClassVar[str] = "onnxruntime"
    modules: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnx")
    extra: ClassVar[str] = "onnxruntime"
    precisions: ClassVar[tuple[Precision, ...]] = (Precision.FP32, Precision.FP16, Precision.INT8)
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    source: ClassVar[str] = "onnx"
    calib_methods: ClassVar[tuple[str, ...]] = ("minmax", "entropy", "percentile")
    why_no_accuracy_control: ClassVar[str] = _NO_ACCURACY_CONTROL

    def __init__(self, session: Any, package: Package | None, metadata: dict[str, Any]) -> None:
        super().__init__()
        self._session = session
        self._package = package
        self._outputs = {o.name for o in session.get_outputs()}
        self._metadata = metadata
        self._trace: str | None = None  # the profiler's file prefix, when opened to profile

    # --- build --------------------------------------------------------------------------------
    @classmethod
    def build(cls, request: BuildRequest, out_dir: Path) -> BuildOutput:
        import onnx

        source = request.onnx_file()
        target = out_dir / _FILE
        runtime: dict[str, Any] = {"format": "onnx"}
        calibration = None
        if request.precision is Precision.FP32:
            _copy_onnx(source, target)
        elif request.precision is Precision.FP16:
            from onnxruntime.transformers.float16 import convert_float_to_float16

            # Float32 input/output stay float32, so the engine contract does not change.
            model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
            onnx.save(model, target)
            runtime["note"] = "fp16 runs on CUDA only"
        else:
            from ocrnet.engines._onnxruntime_quantize import quantize_static_qdq

            if request.options.get("max_drop") is not None:
                raise OcrnetError(_NO_ACCURACY_CONTROL)
            calibration = quantize_static_qdq(source, target, request.calibration,
                                              **request.options)
            if request.fix_batch:
                _fix_batch(target, request.fix_batch)
                calibration["calibrated_at_batch"] = 1
            runtime["quantization"] = "QDQ int8, per-channel weights"
        return BuildOutput(runtime=runtime, calibration=calibration)

    # --- open ---------------------------------------------------------------------------------
    @classmethod
    def runnable_precisions(cls, device: str = "cpu") -> tuple[Precision, ...]:
        return cls.precisions if device.startswith("cuda") else (Precision.FP32, Precision.INT8)

    @classmethod
    def open(cls, package: Package, device: str = "cpu", **opts: Any) -> OnnxRuntimeEngine:
        if package.precision is Precision.FP16 and not device.startswith("cuda"):
            raise OcrnetError(
                f"package {package.path} is fp16, which ONNX Runtime runs on CUDA only (its CPU "
                "provider would cast every convolution back to fp32); open it with "
                "--device cuda, or build openvino bf16 for the CPU")
        trace = None
        if opts.get("profile"):
            import tempfile

            trace = str(Path(tempfile.mkdtemp(prefix="ocrnet-ort-profile-")) / "ort")
        session = _session(package.file(_FILE), device, opts.get("threads"), trace)
        meta = package_metadata(package, device, providers=session.get_providers())
        engine = cls(session, package, meta)
        engine._trace = trace
        return engine

    @classmethod
    def open_onnx(cls, path: str | os.PathLike[str], device: str = "cpu",
                  **opts: Any) -> OnnxRuntimeEngine:
        """A bare `.onnx` file as exported by `ocrnet export` (float32 NCHW input).

        Its external-data entries must be files in its own folder (checked before ONNX Runtime
        follows them): nothing outside what the user named is read.
        """
        import onnx

        from ocrnet.export import check_external_data

        path = Path(path)
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as err:  # protobuf's DecodeError and friends
            raise OcrnetError(f"{path} is not a readable ONNX model ({type(err).__name__}); "
                              "export it again with `ocrnet export`") from None
        check_external_data(path, proto)
        del proto
        session = _session(path, device, opts.get("threads"))
        first = session.get_inputs()[0]
        if first.name != INPUT_NAME or first.type != "tensor(float)":
            raise OcrnetError(f"{path} takes {first.name!r} {first.type}; engines need the "
                              f"float32 NCHW {INPUT_NAME!r} of `ocrnet export` (no --uint8-input)")
        meta = {"name": path.name, "path": str(path), "backend": cls.backend,
                "precision": "fp32", "device": device, "input_shape": list(first.shape),
                "providers": session.get_providers()}
        return cls(session, None, meta)

    # --- run ----------------------------------------------------------------------------------
    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        if self._package is not None:
            check_input_shape(self._package, batch)
        if LOWRES in self._outputs:
            (lowres,) = self._session.run([LOWRES], {INPUT_NAME: batch})
            return lowres_result(lowres, batch.shape[-2:], want_logits)
        names = [n for n in ("labels", "logits") if n in self._outputs
                 and (n == "labels" or want_logits or "labels" not in self._outputs)]
        if want_logits and "logits" not in self._outputs:
            raise OcrnetError("this model has no logits output (exported with --outputs labels)")
        got = dict(zip(names, self._session.run(names, {INPUT_NAME: batch}), strict=True))
        labels = got["labels"] if "labels" in got else got["logits"].argmax(1).astype(np.uint8)
        return InferResult(labels, got.get("logits") if want_logits else None)

    def layer_profile(self) -> list[dict[str, Any]]:
        """Mean time per node over the runs since opening (opened with `profile=True`); ends
        the session's profiling, so call it once, after the runs to profile."""
        import json

        if self._session is None or not self._trace:
            raise OcrnetError("open the package with profile=True for per-layer times")
        trace = Path(self._session.end_profiling())
        events = json.loads(trace.read_text())
        shutil.rmtree(trace.parent, ignore_errors=True)
        self._trace = None
        return _node_times(events)

    def _close_impl(self) -> None:
        self._session = None


def _node_times(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ORT's trace events -> one row per node: its mean kernel time per session run, the
    first run (allocations, the slow first call) left out when there are more."""
    starts = sorted((e.get("ts", 0), e.get("dur", 0)) for e in events
                    if e.get("name") == "model_run")
    cutoff = sum(starts[0]) if len(starts) > 1 else -1
    runs = max(1, len(starts) - 1 if len(starts) > 1 else len(starts))
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith("_kernel_time") or \
                e.get("ts", 0) < cutoff:
            continue
        node = name.removesuffix("_kernel_time")
        args = e.get("args", {})
        row = rows.setdefault(node, {
            "name": node, "type": args.get("op_name", ""), "kernel": args.get("provider", ""),
            "ms": 0.0, "precision": "", "originals": [node]})
        row["ms"] += e.get("dur", 0) / 1e3 / runs
    return list(rows.values())


def _copy_onnx(source: Path, target: Path) -> None:
    """Put the graph into the package whole: a plain copy, or, where its weights live in
    external-data files (checked by `build` to be inside the source's folder), the graph and one
    `model.onnx.data` next to it, so the package never refers to files outside itself."""
    import onnx

    proto = onnx.load(str(source), load_external_data=False)
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        shutil.copyfile(source, target)
        return
    proto = onnx.load(str(source))  # now with the data, from the checked files
    onnx.save(proto, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
              location=target.name + ".data")


def _fix_batch(path: Path, batch: int) -> None:
    """Make a symbolic-batch graph's inputs and outputs batch `batch`, as the package says."""
    import onnx

    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(model, str(path))
