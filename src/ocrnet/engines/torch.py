"""PyTorch: eager from a checkpoint, or an AOTInductor-compiled `.pt2` package.

The package holds `model.pt2` from `torch.export` + `torch._inductor.aoti_compile_and_package`:
it loads with `torch._inductor.aoti_load_package` without ocrnet's model code. It is compiled for
one device kind (CPU or CUDA) and precision; opening it on another device is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ocrnet.engines.base import (
    BuildOutput,
    BuildRequest,
    Engine,
    InferResult,
    check_input_shape,
    package_metadata,
)
from ocrnet.errors import OcrnetError
from ocrnet.precision import Precision

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ocrnet.package import Package

_FILE = "model.pt2"


def _dtype(precision: Precision) -> torch.dtype:
    import torch

    return {Precision.FP32: torch.float32, Precision.FP16: torch.float16,
            Precision.BF16: torch.bfloat16}[precision]


def _check_cuda(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OcrnetError(f"device {device!r} asked for, but this torch ({torch.__version__}) "
                          "sees no CUDA GPU; use --device cpu or install a CUDA build of torch")


def _wrap(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """float32 input -> (labels uint8, logits float32), the model running in `dtype`."""
    import torch

    class _Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.model(x.to(dtype))
            return logits.argmax(1).to(torch.uint8), logits.float()

    return _Exported().eval()


def _model_block(model: nn.Module) -> dict[str, Any]:
    """Variant and classes of an OCRNet (as a package records them), so `Engine.info` knows
    what the eager engine runs without anyone re-reading its checkpoint."""
    variant = getattr(getattr(model, "variant", None), "name", None)
    classes = getattr(model, "num_classes", None)
    return {"variant": variant, "num_classes": classes} if variant else {}


class TorchEngine(Engine):
    """Eager (`from_checkpoint`) or AOTInductor (`open` on a package)."""

    backend: ClassVar[str] = "torch"
    modules: ClassVar[tuple[str, ...]] = ("torch",)
    extra: ClassVar[str] = "torch"
    precisions: ClassVar[tuple[Precision, ...]] = (Precision.FP32, Precision.FP16, Precision.BF16)
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    source: ClassVar[str] = "torch"
    # model.pt2 holds a compiled shared library that loading runs: trust it like a pickle.
    native_code: ClassVar[bool] = True

    def __init__(self, runner: Any, device: str, dtype: torch.dtype,
                 package: Package | None, metadata: dict[str, Any]) -> None:
        super().__init__()
        self._runner = runner
        self._device = device
        self._dtype = dtype
        self._package = package
        self._metadata = metadata

    # --- eager ------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str = "cpu", *,
                        precision: str | Precision = "fp32", trust_checkpoint: bool = False,
                        threads: int | None = None) -> TorchEngine:
        """Eager PyTorch engine from a `.pth` checkpoint (variant detected from its shapes)."""
        import torch

        from ocrnet.model import model_from_checkpoint

        p = cls.check_precision(precision)
        _check_cuda(device)
        if threads:
            torch.set_num_threads(int(threads))
        model = model_from_checkpoint(path, trust_checkpoint=trust_checkpoint)
        return cls.from_module(model, device, precision=p, name=Path(path).name, path=str(path))

    @classmethod
    def from_module(cls, model: nn.Module, device: str = "cpu", *,
                    precision: str | Precision = "fp32", **meta: Any) -> TorchEngine:
        """Eager engine around an in-memory model (tests, `compare`'s reference)."""
        import copy

        p = cls.check_precision(precision)
        dtype = _dtype(p)
        if p is not Precision.FP32 or device != "cpu":
            model = copy.deepcopy(model)  # .to() converts in place: leave the caller's model be
        model = model.to(device=device, dtype=dtype).eval()
        metadata = {"backend": "torch", "precision": p.value, "device": device,
                    "input_shape": ["batch", 3, "height", "width"],
                    "runtime": {"mode": "eager", "dtype": str(dtype).removeprefix("torch.")},
                    "model": _model_block(model), **meta}
        return cls(model, device, dtype, None, metadata)

    # --- AOTInductor package ------------------------------------------------------------------
    @classmethod
    def build(cls, request: BuildRequest, out_dir: Path) -> BuildOutput:
        import torch

        if request.model is None:
            raise OcrnetError("backend 'torch' builds from a checkpoint (.pth), not from ONNX")
        _check_cuda(request.device)
        import copy

        dtype = _dtype(request.precision)
        device = request.device
        model = _wrap(copy.deepcopy(request.model).to(device=device, dtype=dtype), dtype)
        example = torch.zeros(request.input_shape, device=device)
        dynamic = None
        if request.dynamic:
            auto = torch.export.Dim.DYNAMIC
            dynamic = {"x": {0: auto, 2: auto, 3: auto}}
        with torch.inference_mode():
            program = torch.export.export(model, (example,), dynamic_shapes=dynamic)
            torch._inductor.aoti_compile_and_package(program, package_path=str(out_dir / _FILE))
        return BuildOutput(runtime={"mode": "aotinductor", "device": device.split(":")[0],
                                    "dtype": str(dtype).removeprefix("torch.")})

    @classmethod
    def open(cls, package: Package, device: str = "cpu", *, trust: bool = False,
             **opts: Any) -> TorchEngine:
        """Load an AOTInductor package; `trust=True` is required, since it runs native code."""
        if not trust:
            raise OcrnetError(
                f"package {package.path} is an AOTInductor package: {_FILE} holds a compiled "
                "shared library that opening it would run, like a pickle; if you built it or "
                "trust its origin, pass --trust-package (trust_package=True)")
        import torch

        built_for = package.meta.get("runtime", {}).get("device", "cpu")
        if device.split(":")[0] != built_for:
            raise OcrnetError(f"package {package.path} is compiled for {built_for!r}; it cannot "
                              f"run on {device!r} (build it again with --device {device})")
        _check_cuda(device)
        if opts.get("threads"):
            torch.set_num_threads(int(opts["threads"]))
        index = int(device.split(":")[1]) if ":" in device else -1
        runner = torch._inductor.aoti_load_package(str(package.file(_FILE)),
                                                   device_index=index)
        return cls(runner, device, _dtype(package.precision), package,
                   package_metadata(package, device))

    # --- running ------------------------------------------------------------------------------
    def _infer_impl(self, batch: np.ndarray, want_logits: bool) -> InferResult:
        import torch

        x = torch.from_numpy(batch).to(self._device)
        with torch.inference_mode():
            if self._package is None:
                logits = self._runner(x.to(self._dtype)).float()
                labels = logits.argmax(1).to(torch.uint8)
            else:
                check_input_shape(self._package, batch)
                labels, logits = self._runner(x)
        return InferResult(labels.cpu().numpy(),
                           logits.cpu().numpy() if want_logits else None)

    def _close_impl(self) -> None:
        self._runner = None
