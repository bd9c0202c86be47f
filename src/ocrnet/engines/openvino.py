"""OpenVINO: the IR (`model.xml` + `model.bin`) compiled for the CPU with an explicit precision.

Trap this file exists to avoid: on CPUs with AVX-512 BF16 or AMX, OpenVINO's CPU plugin runs
float models in bf16 unless told otherwise, and it silently runs bf16 when f16 is asked for on
a CPU without native fp16. We always set `INFERENCE_PRECISION_HINT` to what the package says,
read it back from the compiled model, and refuse to run if the plugin chose something else.
int8 packages take the hint of their remainder: `int8` f32, `int8-bf16` bf16, `int8-fp16` f16
(NNCF's FakeQuantize ops run in int8 whatever the hint; the hint decides everything else).

The manifest's recorded hint is not covered by the files' sha256 (the manifest lists them), so
opening a package checks that the hint agrees with its precision: an edited hint must never run
bf16 while every report says fp32.

Open options besides `threads`/`pinning`: `streams=K` compiles for throughput (K streams, each
on its share of the cores; `infer_async` keeps K requests running), `profile=True` turns on
the performance counters `layer_profile` reads (`ocrnet bench --profile`).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
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
from ocrnet.errors import OcrnetError, PackageError
from ocrnet.package import LOWRES
from ocrnet.precision import Precision

if TYPE_CHECKING:
    from ocrnet.package import Package

_XML, _BIN = "model.xml", "model.bin"
#: The plugin's inference precision for each package precision. int8 packages run their
#: quantized ops in int8 and everything NNCF left unquantized in the remainder's type.
_HINT = {Precision.FP32: "f32", Precision.FP16: "f16", Precision.BF16: "bf16"}
#: The plugin's capability a half-precision remainder needs.
_CAPABILITY = {Precision.FP16: "FP16", Precision.BF16: "BF16"}


def hint_of(precision: Precision) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT for a package precision (int8: its remainder's)."""
    return _HINT[precision.remainder]


def _instead(precision: Precision, caps: str, applied: str) -> str:
    """What to build instead where the CPU lacks fp16: the bf16 form where the CPU runs bf16
    (its capabilities say so, or the plugin just chose bf16), else the fp32 one; never a silent
    swap."""
    if "BF16" not in caps and applied != "bf16":
        return "int8" if precision is Precision.INT8_FP16 else "fp32"
    return {Precision.FP16: "bf16 (or fp32)", Precision.INT8_FP16: "int8-bf16 (or int8)"
            }.get(precision, "fp32")


def _compile(model: Any, device: str, hint: str, threads: int | None = None,
             precision: Precision | None = None, pinning: bool | None = None,
             profile: bool = False, streams: int = 1) -> Any:
    import openvino as ov

    core = ov.Core()
    ov_device = device.upper()
    # One stream holding every core (LATENCY), or `streams` requests run side by side, each
    # on its share of the cores (THROUGHPUT): for jobs that keep several images in flight.
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint,
                              "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY"}
    if streams > 1:
        config["NUM_STREAMS"] = int(streams)
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if pinning is not None:
        # Off where several engines share a machine (Ray actors): pinned threads of two
        # engines would pile onto the same cores.
        config["ENABLE_CPU_PINNING"] = bool(pinning)
    if profile:  # per-node times for `layer_profile` (ocrnet.bench.profile); off by default
        config["PERF_COUNT"] = True
    compiled = core.compile_model(model, ov_device, config)
    applied = _applied_hint(compiled)
    if applied != hint:
        caps = ", ".join(core.get_property(ov_device, "OPTIMIZATION_CAPABILITIES"))
        raise OcrnetError(
            f"OpenVINO's {ov_device} plugin runs {applied} when {hint} is asked for on this "
            f"machine (capabilities: {caps}); refusing to run another precision. "
            + (f"Build --precision {_instead(precision, caps, applied)} instead" if precision else
               "Pick a precision this CPU has (e.g. bf16 or fp32)"))
    return compiled


def _applied_hint(compiled: Any) -> str:
    """'f32', 'bf16' or 'f16': the inference precision the compiled model really uses."""
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


class OpenVinoEngine(Engine):
    """A compiled OpenVINO model and one infer request (engines are not shared across threads)."""

    backend: ClassVar[str] = "openvino"
    modules: ClassVar[tuple[str, ...]] = ("openvino",)
    extra: ClassVar[str] = "openvino"
    precisions: ClassVar[tuple[Precision, ...]] = (
        Precision.FP32, Precision.FP16, Precision.BF16, Precision.INT8, Precision.INT8_BF16,
        Precision.INT8_FP16)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    source: ClassVar[str] = "onnx"
    calib_methods: ClassVar[tuple[str, ...]] = ("mixed", "performance")
    accuracy_control: ClassVar[bool] = True
    throughput_streams: ClassVar[bool] = True

    @classmethod
    def runnable_precisions(cls, device: str = "cpu") -> tuple[Precision, ...]:
        """Half types (alone or as an int8 remainder) only where the plugin reports native
        support: elsewhere it would run bf16 for f16, or emulate."""
        import openvino as ov

        caps = set(ov.Core().get_property(device.upper(), "OPTIMIZATION_CAPABILITIES"))
        return tuple(p for p in cls.precisions
                     if p.remainder not in _CAPABILITY or _CAPABILITY[p.remainder] in caps)

    def __init__(self, compiled: Any, package: Package, metadata: dict[str, Any]) -> None:
        super().__init__()
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._package = package
        self._outputs = {name for out in compiled.outputs for name in out.get_names()}
        self._metadata = metadata
        self._originals: dict[str, tuple[str, list[str]]] | None = None
        self._idle: queue.SimpleQueue[Any] | None = None  # the requests of streams > 1
        self._lock = threading.Lock()

    # --- build --------------------------------------------------------------------------------
    @classmethod
    def build(cls, request: BuildRequest, out_dir: Path) -> BuildOutput:
        import openvino as ov

        hint = hint_of(request.precision)
        model = ov.convert_model(str(request.onnx_file()))
        calibration = None
        if request.precision.quantized:
            # Fail before calibrating (minutes), not after, when the CPU lacks the remainder.
            _compile(model, request.device, hint, precision=request.precision)
            model, calibration = _quantize(model, request, hint)
            if request.fix_batch:
                model.reshape(list(request.input_shape))
                calibration["calibrated_at_batch"] = 1
        compiled = _compile(model, request.device, hint, precision=request.precision)
        # fp16 packages store fp16 weights (half the size); others keep float32 weights so
        # that the runtime precision is only what the hint says.
        ov.save_model(model, str(out_dir / _XML),
                      compress_to_fp16=request.precision is Precision.FP16)
        runtime = {"device": request.device.upper(), "inference_precision_hint": hint,
                   "inference_precision_applied": _applied_hint(compiled),
                   "weights": "f16" if request.precision is Precision.FP16 else "f32"}
        if request.precision.quantized:
            runtime["quantized_ops"] = "int8 (NNCF FakeQuantize)"
            runtime["remainder"] = request.precision.remainder.value
        return BuildOutput(runtime=runtime, calibration=calibration)

    # --- open ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, package: Package, device: str = "cpu", **opts: Any) -> OpenVinoEngine:
        import openvino as ov

        hint = _recorded_hint(package)
        model = ov.Core().read_model(str(package.file(_XML)), str(package.file(_BIN)))
        streams = int(opts.get("streams") or 1)
        compiled = _compile(model, device, hint, opts.get("threads"), package.precision,
                            opts.get("pinning"), bool(opts.get("profile")), streams)
        meta = package_metadata(package, device,
                                inference_precision_applied=_applied_hint(compiled),
                                streams=streams)
        return cls(compiled, package, meta)

    # --- run ----------------------------------------------------------------------------------
    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        check_input_shape(self._package, batch)
        if want_logits and not self._outputs & {"logits", LOWRES}:
            raise OcrnetError("this package has no logits output")
        if self._metadata.get("streams", 1) == 1:  # the one request (not shared by threads)
            self._request.infer({0: batch})
            raw = self._read(self._request, want_logits)
        else:  # a request of the pool: threads may call this at once, one request each
            idle = self._pool()
            request = idle.get()
            try:
                request.infer({0: batch})
                raw = self._read(request, want_logits)
            finally:
                idle.put(request)
        return self._result(raw, batch.shape[-2:], want_logits)

    def _read(self, request: Any, want_logits: bool) -> dict[str, np.ndarray]:
        """Copies of the outputs a result needs, so that the request can run again at once."""
        if LOWRES in self._outputs:
            return {LOWRES: request.get_tensor(LOWRES).data.copy()}
        names = ["labels"] if "labels" in self._outputs else []
        if want_logits or not names:
            names.append("logits")
        return {name: request.get_tensor(name).data.copy() for name in names}

    @staticmethod
    def _result(raw: dict[str, np.ndarray], size: tuple[int, ...],
                want_logits: bool) -> InferResult:
        if LOWRES in raw:  # labels in bands, mmseg-exact (engines.base.lowres_result)
            return lowres_result(raw[LOWRES], (int(size[0]), int(size[1])), want_logits)
        labels = raw["labels"] if "labels" in raw else raw["logits"].argmax(1).astype(np.uint8)
        return InferResult(labels, raw.get("logits") if want_logits else None)

    def _pool(self) -> queue.SimpleQueue[Any]:
        """As many requests as the plugin runs at once, made on first use (once)."""
        with self._lock:
            if self._idle is None:
                idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
                n = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
                for _ in range(max(1, n)):
                    idle.put(self._compiled.create_infer_request())
                self._idle = idle
            return self._idle

    def infer_async(self, batch: np.ndarray) -> Future[InferResult]:
        """Labels for `batch` from one of the compiled model's requests, without waiting: up
        to `streams` (open option) run at once; more wait for a free request. The bench's
        K-in-flight phase and batch jobs use it; `infer` stays the one-request path."""
        if self._request is None:
            raise RuntimeError("OpenVinoEngine is closed")
        check_input_shape(self._package, batch)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        idle = self._pool()
        request = idle.get()  # blocks while every request is busy
        future: Future[InferResult] = Future()
        size = batch.shape[-2:]

        def done(_userdata: object) -> None:
            try:
                try:
                    raw = self._read(request, False)
                finally:
                    idle.put(request)
                future.set_result(self._result(raw, size, False))
            except Exception as err:  # handed to the waiter, never lost in OpenVINO's thread
                future.set_exception(err)

        request.set_callback(done, None)
        request.start_async({0: batch})
        return future

    def layer_profile(self) -> list[dict[str, Any]]:
        """The last inference's time per executed node (opened with `profile=True`)."""
        if self._request is None:
            raise RuntimeError("OpenVinoEngine is closed")
        if not self._compiled.get_property("PERF_COUNT"):
            raise OcrnetError("open the package with profile=True for per-layer times")
        if self._originals is None:  # the runtime graph does not change: read it once
            self._originals = _originals(self._compiled)
        originals = self._originals
        return [{"name": p.node_name, "type": p.node_type, "kernel": p.exec_type,
                 "ms": p.real_time.total_seconds() * 1e3,
                 "precision": originals.get(p.node_name, ("", []))[0],
                 "originals": originals.get(p.node_name, ("", []))[1]}
                for p in self._request.profiling_info if p.status.name == "EXECUTED"]

    def _close_impl(self) -> None:
        self._request = None
        self._idle = None
        self._compiled = None


def _originals(compiled: Any) -> dict[str, tuple[str, list[str]]]:
    """Executed node -> (its runtime precision, the graph nodes the plugin fused into it)."""
    out = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        names = str(info["originalLayersNames"].astype(str)) if "originalLayersNames" in info \
            else ""
        precision = str(info["runtimePrecision"].astype(str)) if "runtimePrecision" in info \
            else ""
        out[op.get_friendly_name()] = (precision, [n for n in names.split(",") if n])
    return out


def _recorded_hint(package: Package) -> str:
    """The package's recorded hint, which must be the one its precision implies."""
    want = hint_of(package.precision)
    recorded = package.meta.get("runtime", {}).get("inference_precision_hint") or want
    if recorded != want:
        raise PackageError(
            f"package {package.path} says precision {package.precision.value} but records "
            f"inference precision hint {recorded!r} (that precision runs {want!r}); its "
            "manifest was edited or is corrupt: rebuild it with `ocrnet build`")
    return want


def _quantize(model: Any, request: BuildRequest, hint: str) -> tuple[Any, dict[str, Any]]:
    """NNCF int8, plain or within `options["max_drop"]` mIoU points on held-out images."""
    from ocrnet.engines import _openvino_quantize as q

    options = dict(request.options)
    max_drop = options.pop("max_drop", None)
    if max_drop is None:
        return q.quantize(model, request.calibration, **options)
    return q.quantize_within(model, request.calibration, request.validation or [],
                             max_drop=max_drop, hint=hint, **options)
