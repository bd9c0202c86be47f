"""The one engine interface every backend implements (see docs/architecture.md).

An engine runs a model on a batch of preprocessed images (NCHW float32, normalised with the
mmseg mean/std) and returns per-pixel labels at the batch's H, W, and logits when asked.
Timing is not the engine's business: `ocrnet.bench` owns warm-up, clocks and statistics.

A backend is one module `ocrnet.engines.<name>` holding one `Engine` subclass that declares its
capabilities (precisions, devices, the pip extra it needs), its build step (`build`, writing the
backend's files into a package being staged) and its run step (`open` + `_infer_impl`).
"""

from __future__ import annotations

import abc
import difflib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ocrnet.errors import BackendUnavailableError, OcrnetError
from ocrnet.precision import Precision

#: How predictions return to an image's original size (see `Engine.labels_at`).
RESIZE_MODES = ("logits", "labels")

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from torch import nn

    from ocrnet.package import Package


@dataclass
class InferResult:
    labels: np.ndarray  # (N, H, W) uint8 train ids
    logits: np.ndarray | None = None  # (N, C, H, W) float32 when requested


@dataclass(frozen=True)
class EngineInfo:
    """What an engine runs, typed: the fields of `Engine.metadata` that tools read.

    `variant` and `num_classes` describe the model (bench counts FLOPs from them); None where
    the engine does not know them (a bare ONNX file). `input_shape` is (N, C, H, W), dynamic
    dimensions as None, -1 or a name.
    """

    backend: str
    precision: str
    device: str = "cpu"
    variant: str | None = None
    num_classes: int | None = None
    input_shape: tuple[int | str | None, ...] | None = None
    name: str | None = None
    path: str | None = None

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> EngineInfo:
        """Read from `Engine.metadata`: the model block of a package, or top-level keys."""
        variant, classes = None, None
        for d in (meta, meta.get("model"), meta.get("source")):
            if isinstance(d, dict) and d.get("variant"):
                variant = str(d["variant"])
                names = d.get("classes") or meta.get("classes")
                n = d.get("num_classes") or meta.get("num_classes")
                classes = int(n) if n else (len(names) if names else None)
                break
        shape = meta.get("input_shape")
        return cls(backend=str(meta.get("backend", "?")),
                   precision=str(meta.get("precision", "?")),
                   device=str(meta.get("device", "cpu")), variant=variant, num_classes=classes,
                   input_shape=tuple(shape) if isinstance(shape, (list, tuple)) else None,
                   name=meta.get("name"), path=meta.get("path"))


@dataclass
class BuildRequest:
    """What `build` hands a backend: the model in the form it asked for, and the options.

    `onnx_path` is set for backends with `source = "onnx"`, `model` (a float32 eval-mode
    `nn.Module`) for `source = "torch"`. `calibration` yields preprocessed (1, 3, H, W) float32
    batches for int8; `options` holds backend-specific knobs (e.g. `calib_method`).
    """

    precision: Precision
    input_shape: tuple[int, int, int, int]
    dynamic: bool = False
    device: str = "cpu"
    onnx_path: Path | None = None
    model: nn.Module | None = None
    calibration: Iterable[np.ndarray] | None = None
    # int8 at a static batch N > 1: the graph has a symbolic batch and `calibration` yields
    # batch-1 images; the backend fixes the batch to this N after calibrating.
    fix_batch: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # int8 within an mIoU budget (`options["max_drop"]`): held-out labelled (image, label)
    # pairs of the calibration split, for backends with `accuracy_control`.
    validation: Sequence[tuple[np.ndarray, np.ndarray]] | None = None

    def onnx_file(self) -> Path:
        """The ONNX graph to build from (build.py exports one for `source = "onnx"`)."""
        if self.onnx_path is None:
            raise RuntimeError("BuildRequest.onnx_path is not set for an ONNX-based backend")
        return self.onnx_path


@dataclass
class BuildOutput:
    """What a backend reports back: what actually runs, and its calibration summary."""

    runtime: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None


class Engine(abc.ABC):
    """Public `infer` checks arguments and state, then calls the backend's `_infer_impl`."""

    backend: ClassVar[str]
    #: Python modules the backend imports (lazily) and the pip extra that installs them.
    modules: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""
    precisions: ClassVar[tuple[Precision, ...]] = (Precision.FP32,)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    #: "onnx" or "torch": which form of the model `build` needs.
    source: ClassVar[str] = "onnx"
    #: int8 calibration methods this backend offers, the default first (empty: no int8).
    calib_methods: ClassVar[tuple[str, ...]] = ()
    #: Whether int8 can be built within an mIoU budget (`build --max-drop`).
    accuracy_control: ClassVar[bool] = False
    #: Where it is not: why, and what to do instead (the error `check_max_drop` raises).
    why_no_accuracy_control: ClassVar[str] = ""

    #: Whether `open(..., streams=K)` runs K requests at once (a throughput mode): `infer` may
    #: then be called from K threads, each call on a request of its own.
    throughput_streams: ClassVar[bool] = False

    #: True where opening a package loads native code from it (AOTInductor's shared library):
    #: `open_model` then passes `trust` and the backend refuses to load without it.
    native_code: ClassVar[bool] = False

    def __init__(self) -> None:
        self._closed = False
        self._metadata: dict[str, Any] = {"backend": self.backend}

    # --- the backend's part -------------------------------------------------------------
    # build/open are what a backend module adds; an engine made in code (a test double, an
    # engine wrapping a live model) only needs _infer_impl, so these are not abstract.
    @classmethod
    def build(cls, request: BuildRequest, out_dir: Path) -> BuildOutput:
        """Write the backend's files for `request` into `out_dir` (a staging directory)."""
        raise NotImplementedError(f"{cls.__name__} cannot build packages")

    @classmethod
    def open(cls, package: Package, device: str = "cpu", **opts: Any) -> Engine:
        """Load a verified package onto `device`."""
        raise NotImplementedError(f"{cls.__name__} cannot open packages")

    @abc.abstractmethod
    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult: ...

    def _close_impl(self) -> None:  # noqa: B027 - optional hook
        pass

    def layer_profile(self) -> list[dict[str, Any]]:
        """Per-node times of the last inference(s), for engines opened with `profile=True`:
        dicts with name, type, kernel, precision, ms (per inference) and originals (the graph
        nodes fused into it). Backends without a per-layer profiler raise OcrnetError."""
        raise OcrnetError(f"backend {self.backend!r} has no per-layer profile")

    # --- capabilities, checked up front -------------------------------------------------
    @classmethod
    def require(cls) -> None:
        """Raise `BackendUnavailableError` naming the pip extra if a needed module is missing."""
        for module in cls.modules:
            if importlib.util.find_spec(module) is None:
                raise BackendUnavailableError(cls.backend, module, cls.extra)

    @classmethod
    def check_precision(cls, precision: str | Precision) -> Precision:
        """Parse `precision` and reject one this backend cannot build, listing the valid ones."""
        p = Precision.parse(precision)
        if p not in cls.precisions:
            valid = ", ".join(q.value for q in cls.precisions)
            raise OcrnetError(
                f"backend {cls.backend!r} does not support precision {p.value!r}; valid: {valid}")
        return p

    @classmethod
    def check_max_drop(cls, precision: Precision, max_drop: float) -> None:
        """Reject an mIoU budget this backend or precision cannot be built within."""
        if not precision.quantized:
            raise OcrnetError(f"--max-drop is an int8 budget; precision {precision.value!r} is "
                              "not quantized (use int8, int8-bf16 or int8-fp16)")
        if not max_drop >= 0:  # also rejects NaN
            raise OcrnetError(f"--max-drop must be >= 0 mIoU points, got {max_drop}")
        if not cls.accuracy_control:
            raise OcrnetError(cls.why_no_accuracy_control
                              or f"--max-drop is not available for backend {cls.backend!r}")

    @classmethod
    def runnable_precisions(cls, device: str = "cpu") -> tuple[Precision, ...]:
        """The precisions this machine runs natively on `device` (default: all declared).

        Backends whose hardware support varies (OpenVINO's f16 needs native fp16 on the CPU)
        narrow this; `ocrnet run` picks its default precisions from it.
        """
        return cls.precisions

    @classmethod
    def check_device(cls, device: str) -> str:
        """Reject a device this backend cannot use (never fall back to another one)."""
        kind = device.split(":", 1)[0]
        if kind not in cls.devices:
            hint = difflib.get_close_matches(kind, cls.devices, n=1)
            maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise OcrnetError(f"backend {cls.backend!r} cannot run on device {device!r}{maybe}; "
                              f"valid: {', '.join(cls.devices)}")
        return device

    # --- the shared part ------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        """What the engine runs: backend, precision, device, input shape, what really runs."""
        return self._metadata

    @property
    def info(self) -> EngineInfo:
        """The metadata that tools read, as a typed record (backend, precision, variant, ...)."""
        return EngineInfo.from_metadata(self.metadata)

    def infer(self, batch: np.ndarray, *, return_logits: bool = False) -> InferResult:
        """Labels (N, H, W) uint8 for a normalized NCHW batch; logits too if asked."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a batch of shape (N, 3, H, W), got {batch.shape}")
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        return self._infer_impl(np.ascontiguousarray(batch), return_logits)

    @property
    def display_name(self) -> str:
        """A readable name for messages: the package or file path, else backend + precision."""
        meta = self.metadata
        for key in ("path", "package", "source"):
            if meta.get(key):
                return str(meta[key])
        parts = [str(meta.get(k)) for k in ("backend", "precision") if meta.get(k)]
        return " ".join(parts) or type(self).__name__

    @property
    def native_scale(self) -> tuple[int, int] | None:
        """The keep-ratio limit (long, short edge) of a static input; None if H or W is dynamic.

        A package built for 128x256 runs only 128x256 inputs, so its own size, not mmseg's
        2048x1024, is the right default resize limit for it.
        """
        shape = self.metadata.get("input_shape") or []
        if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]):
            return max(shape[2:]), min(shape[2:])
        return None

    def default_scale(self, scale: tuple[int, int] | float | None) -> tuple[int, int] | float:
        """`scale` if given, else the engine's static input size, else mmseg's 2048x1024."""
        from ocrnet.defaults import SCALE

        if scale is not None:
            return scale
        return self.native_scale or SCALE

    def labels_at(self, batch: np.ndarray, sizes: list[tuple[int, int]],
                  resize: str = "logits") -> list[np.ndarray]:
        """One (H, W) uint8 train-id map per image at its original size (mmseg's test path).

        When the batch was resized, `resize="logits"` (exact, mmseg's) resizes the logits
        bilinearly and then takes the argmax; `resize="labels"` resizes the labels by nearest
        neighbour (cheaper, approximate). Unresized images use the engine's labels directly.
        """
        from ocrnet.data.transforms import logits_to_labels, resize_labels

        shape = tuple(batch.shape[-2:])
        if any(tuple(size) != shape for size in sizes) and resize == "logits":
            result = self.infer(batch, return_logits=True)
            if result.logits is None:
                raise OcrnetError(
                    f"engine {self.display_name} returns no logits, which the exact (mmseg) "
                    "resize back to the original size needs; run at the original size "
                    "(--scale) or use --resize labels (nearest-neighbour labels, approximate)")
            return [logits_to_labels(lg, size) for lg, size in zip(result.logits, sizes,
                                                                      strict=True)]
        labels = self.infer(batch).labels
        return [resize_labels(lb, size) for lb, size in zip(labels, sizes, strict=True)]

    def close(self) -> None:
        if not self._closed:
            self._close_impl()
            self._closed = True

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def package_metadata(package: Package, device: str, **extra: Any) -> dict[str, Any]:
    """The `Engine.metadata` of an engine opened from `package`."""
    meta = package.meta
    return {
        "name": package.path.name,
        "path": str(package.path),
        "backend": meta["backend"],
        "precision": meta["precision"],
        "device": device,
        "input_shape": meta.get("input", {}).get("shape"),
        "dynamic_axes": meta.get("input", {}).get("dynamic_axes", {}),
        "runtime": meta.get("runtime", {}),
        "outputs": meta.get("outputs"),  # labels, logits or lowres: what confidence maps use
        "model": meta.get("model", {}),  # variant and classes: what bench counts FLOPs from
        **extra,
    }


def check_input_shape(package: Package, batch: np.ndarray) -> None:
    """Reject a batch a static package cannot run, naming the shape it was built for."""
    shape = package.meta.get("input", {}).get("shape")
    if not shape:
        return
    for built, got in zip(shape, batch.shape, strict=True):
        if isinstance(built, int) and built != got:
            spec, got = "x".join(map(str, shape)), "x".join(map(str, batch.shape))
            raise OcrnetError(f"package {package.path} is built for input {spec}, got {got}; "
                              "rebuild with --shape to match or with --dynamic")


def lowres_result(lowres: np.ndarray, size: tuple[int, int], want_logits: bool) -> InferResult:
    """What an engine whose graph ends before the final resize (`--outputs lowres`) returns
    for its (N, C, h, w) output and input size (H, W): the labels of mmseg's resize and
    argmax, computed in bands (`ocrnet.data.transforms.logits_to_labels`), and the full-size
    logits only when asked for."""
    from ocrnet.data.transforms import logits_to_labels, resize_logits

    size = (int(size[0]), int(size[1]))
    labels = logits_to_labels(lowres, size)
    return InferResult(labels, resize_logits(lowres, size) if want_logits else None)
