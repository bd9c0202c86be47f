"""`ocrnet build`: a checkpoint or ONNX file -> an engine package for one backend x precision.

Everything is checked before any work starts (backend known and installed, precision and device
supported, calibration images present for int8), then the backend writes its files into a
staging directory that `PackageWriter` renames into place with the manifest.

`build_package`'s `winograd` (checkpoint sources, ONNX backends) writes the widest 3x3
convolutions as Winograd F(4x4, 3x3); None means "where it is measured to pay": float32 and
bfloat16 with static shapes, never int8 (quantizing the transformed domain). `outputs`
(checkpoint sources) picks the graph's outputs: `labels` alone spares the engine writing
full-resolution float logits (a few % of an image's time; ~10% under int8), but then evaluation
must run at the images' own size. `lowres` (alone, ONNX backends) ends the graph before the
model's final resize: the engine computes the labels from the 1/4-resolution logits in row
bands (`ocrnet.data.resize_argmax`, byte-identical to mmseg's resize and argmax) instead of the
backend's Interpolate writing C full-size planes, and full-size logits when they are asked for.

`max_drop` (int8 forms, backends with accuracy control) builds int8 within that many mIoU points
of the float model, measured on `holdout_count` labelled images of `calib_split` that are not
calibration images (NNCF's quantize_with_accuracy_control); the package's calibration summary
records the budget, the measured drop and the reverted operations.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrnet import defaults, export_cache
from ocrnet.engines import get_backend
from ocrnet.engines.base import BuildRequest
from ocrnet.errors import OcrnetError, OutputError
from ocrnet.export import (
    DEFAULT_OPSET,
    DEFAULT_SHAPE,
    check_external_data,
    export_onnx,
    parse_shape,
)
from ocrnet.fileio import output_error
from ocrnet.layer_map import write_layer_map
from ocrnet.package import (
    GRAPH_OUTPUTS,
    INPUT_NAME,
    LOWRES,
    OUTPUT_NAMES,
    Package,
    PackageWriter,
    sha256_file,
)
from ocrnet.package import tool_versions as _tool_versions
from ocrnet.precision import Precision

_DYNAMIC_AXES = {"0": "batch", "2": "height", "3": "width"}


def build_package(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    backend: str = defaults.BACKEND,
    precision: str | Precision = defaults.PRECISION,
    shape: str | Sequence[int] = DEFAULT_SHAPE,
    dynamic: bool = False,
    device: str = defaults.DEVICE,
    calib_dir: str | os.PathLike[str] | None = None,
    calib_split: str = defaults.CALIB_SPLIT,
    calib_count: int = defaults.CALIB_COUNT,
    calib_method: str | None = None,
    bias_correction: str = defaults.BIAS_CORRECTION,
    keep_float: Sequence[str] | None = None,
    overwrite: bool = False,
    trust_checkpoint: bool = False,
    opset: int = DEFAULT_OPSET,
    winograd: bool | None = None,
    outputs: Sequence[str] = OUTPUT_NAMES,
    max_drop: float | None = None,
    holdout_count: int = 16,
) -> Package:
    """Build an engine package at `out` from a `.pth` checkpoint or an exported `.onnx`.

    int8 needs `calib_dir`, a Cityscapes-layout root whose `calib_split` (train by default,
    never tune on val) provides `calib_count` images, preprocessed exactly as for evaluation.
    `calib_method` is per backend (openvino: mixed | performance; onnxruntime: minmax |
    entropy | percentile); `keep_float` names the parts left unquantized (see
    `ocrnet.quantize.SENSITIVE_PARTS`). `winograd`, `outputs` and `max_drop`: see the module
    docstring.
    """
    cls, p, source = _check_request(backend, precision, device, source, max_drop, outputs)
    calib_files, options, holdout = _int8_setup(
        cls, p, calib_dir, calib_split=calib_split, calib_count=calib_count,
        calib_method=calib_method, bias_correction=bias_correction, keep_float=keep_float,
        max_drop=max_drop, holdout_count=holdout_count)
    from_onnx = source.suffix == ".onnx"
    source_meta = _source_meta(source, from_onnx)
    with tempfile.TemporaryDirectory(prefix="ocrnet-build-") as tmp, \
            PackageWriter(out, overwrite=overwrite) as writer:
        if from_onnx:
            src = _onnx_source(source, source_meta)
        else:
            src = _checkpoint_source(
                cls, p, source, source_meta, Path(tmp), trust_checkpoint=trust_checkpoint,
                shape=shape, dynamic=dynamic, calibrating=bool(calib_files), opset=opset,
                winograd=winograd, outputs=outputs)
        return _write_package(writer, cls, p, src, source_meta, device=device,
                              calib_files=calib_files, holdout=holdout, options=options)


def _write_package(writer: PackageWriter, cls: Any, p: Precision, src: _Source,
                   source_meta: dict[str, Any], *, device: str, calib_files: Sequence[Path],
                   holdout: Sequence[Any], options: dict[str, Any]) -> Package:
    """The write steps, once the request is checked and the source is ready: the backend's files
    and the layer map into the staging folder, then the manifest, committed."""
    static = [d if isinstance(d, int) else None for d in src.input_shape]
    calibration, validation = _quantization_inputs(calib_files, holdout, static, src, options)
    request = BuildRequest(
        precision=p, input_shape=src.example, dynamic=None in static,
        device=device, onnx_path=src.onnx_path, model=src.model, calibration=calibration,
        fix_batch=src.fix_batch, options=options, validation=validation)
    with _writing_package(writer.out, writer.dir):
        output = cls.build(request, writer.dir)
        if src.onnx_path is not None:  # node -> model block, FLOPs, bytes: for `--profile`
            write_layer_map(src.onnx_path, writer.dir)
    return writer.commit(_manifest(cls.backend, p, src.input_shape, src.model_meta, source_meta,
                                   output.runtime, output.calibration, *src.graph))


# A backend write failing while the package's disk has less than this free is the disk being
# full (OpenVINO reports it as "basic_ios::clear: iostream error", naming no file).
_FULL_DISK_BYTES = 16 << 20


@contextlib.contextmanager
def _writing_package(out: Path, staging: Path) -> Iterator[None]:
    """A full disk (or another write error) while the backend writes its files becomes one
    `OutputError` naming the package being built, not the source file or a raw traceback."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        try:
            free: int | None = shutil.disk_usage(staging).free
        except OSError:
            free = None
        full = free is not None and free < _FULL_DISK_BYTES
        if full and (isinstance(err, RuntimeError) or err.errno in (errno.ENOSPC, errno.EDQUOT)):
            raise OutputError(f"cannot write the package {out}: no space left on the device "
                              f"holding {out.parent}; free some space or build elsewhere") \
                from None
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise output_error(out, err) from None
        raise


@dataclass
class _Source:
    """What the backend builds from: the float model and/or its ONNX graph, and their facts."""

    input_shape: list[int | str]
    example: Sequence[int]
    model_meta: dict[str, Any]
    graph: tuple[list[str], dict[str, list[str]]]  # (outputs, rewrites)
    onnx_path: Path | None = None
    model: Any = None
    fix_batch: int | None = None


def _source_meta(source: Path, from_onnx: bool) -> dict[str, Any]:
    """The manifest's record of what the package was built from."""
    return {"path": str(source), "sha256": sha256_file(source),
            "kind": "onnx" if from_onnx else "checkpoint"}


def _check_request(backend: str, precision: str | Precision, device: str,
                   source: str | os.PathLike[str], max_drop: float | None,
                   outputs: Sequence[str] = OUTPUT_NAMES) -> tuple[Any, Precision, Path]:
    """The backend class, the precision, and the source path, all checked before any work."""
    cls = get_backend(backend)
    if LOWRES in outputs and cls.source != "onnx":
        raise OcrnetError(f"--outputs {LOWRES} ends an ONNX graph before its final resize; "
                          f"backend {backend!r} runs the PyTorch model: build it without")
    cls.require()
    p = cls.check_precision(precision)
    cls.check_device(device)
    source = Path(source)
    if not source.is_file():
        raise OcrnetError(f"no checkpoint or ONNX file at {source}")
    if source.suffix == ".onnx" and cls.source != "onnx":
        raise OcrnetError(f"backend {backend!r} builds from a checkpoint (.pth), not from ONNX")
    if max_drop is not None:
        cls.check_max_drop(p, max_drop)
    return cls, p, source


def _int8_setup(cls: Any, p: Precision, calib_dir: str | os.PathLike[str] | None, *,
                calib_split: str, calib_count: int, calib_method: str | None, bias_correction: str,
                keep_float: Sequence[str] | None, max_drop: float | None,
                holdout_count: int) -> tuple[list[Path], dict[str, Any], list[Any]]:
    """Calibration files, the backend's int8 options, and the held-out images for `max_drop`
    (all empty for float precisions)."""
    if not p.quantized:
        return [], {}, []
    from ocrnet.quantize import calibration_files, check_int8_options, holdout_samples

    if calib_dir is None:
        raise OcrnetError("int8 needs calibration images: pass --calib-dir (a Cityscapes-"
                          "layout root; its train split is used)")
    calib_files = calibration_files(calib_dir, split=calib_split, count=calib_count)
    options = check_int8_options(cls, calib_method=calib_method,
                                 bias_correction=bias_correction, keep_float=keep_float)
    holdout: list[Any] = []
    if max_drop is not None:
        holdout = holdout_samples(calib_dir, split=calib_split, count=holdout_count,
                                  exclude=calib_files)
        options["max_drop"] = float(max_drop)
    return calib_files, options, holdout


def _onnx_source(source: Path, source_meta: dict[str, Any]) -> _Source:
    """An exported `.onnx` as the source (its checkpoint, if recorded, goes into `source_meta`)."""
    input_shape, model_meta, checkpoint, graph = _onnx_facts(source)
    if checkpoint:
        source_meta["checkpoint"] = checkpoint
    example = tuple(d if isinstance(d, int) else fallback
                    for d, fallback in zip(input_shape, DEFAULT_SHAPE, strict=True))
    return _Source(input_shape, example, model_meta, graph, onnx_path=source)


def _checkpoint_source(cls: Any, p: Precision, source: Path, source_meta: dict[str, Any],
                       tmp: Path, *, trust_checkpoint: bool, shape: str | Sequence[int],
                       dynamic: bool, calibrating: bool, opset: int, winograd: bool | None,
                       outputs: Sequence[str]) -> _Source:
    """A `.pth` checkpoint as the source: the model, exported to ONNX in `tmp` for ONNX
    backends."""
    from ocrnet.model import model_from_checkpoint

    model = model_from_checkpoint(source, trust_checkpoint=trust_checkpoint)
    dims = parse_shape(shape)
    input_shape = [_DYNAMIC_AXES.get(str(i), d) if dynamic else d for i, d in enumerate(dims)]
    model_meta = {"variant": model.variant.name, "num_classes": model.num_classes}
    fix_batch = dims[0] if _calibrate_at_batch_one(calibrating, dims, dynamic) else None
    src = _Source(input_shape, dims, model_meta, (list(OUTPUT_NAMES), {}),  # torch's own
                  model=model, fix_batch=fix_batch)
    if cls.source == "onnx":
        src.onnx_path = tmp / "model.onnx"
        if winograd is None:
            winograd = p in (Precision.FP32, Precision.BF16) and not dynamic
        options = dict(dynamic=dynamic, dynamic_batch=fix_batch is not None, winograd=winograd,
                       outputs=list(outputs), opset=opset)
        key = export_cache.export_key(source_meta["sha256"], dims, **options)
        export_cache.exported(src.onnx_path, key, lambda: export_onnx(
            model, src.onnx_path, shape=dims, **options,
            metadata={"source_sha256": source_meta["sha256"]}))
        src.graph = _onnx_facts(src.onnx_path)[3]
    return src


def _quantization_inputs(calib_files: Sequence[Path], holdout: Sequence[Any],
                         static: Sequence[int | None], src: _Source, options: dict[str, Any]
                         ) -> tuple[Any, Any]:
    """The calibration images (int8) and held-out images (`max_drop`), sized to the input;
    int8 `options` learn the model's class count."""
    calibration = validation = None
    if calib_files:
        from ocrnet.quantize import CalibrationImages

        batch = 1 if src.fix_batch else static[0] or 1
        calibration = CalibrationImages(calib_files, static[2:], batch=batch)
        options["num_classes"] = src.model_meta["num_classes"]
    if holdout:
        from ocrnet.quantize import HeldOutImages

        validation = HeldOutImages(holdout, static[2:])
    return calibration, validation


def _calibrate_at_batch_one(calibrating: bool, shape: Sequence[int], dynamic: bool) -> bool:
    """int8 at a static batch N > 1: export with a symbolic batch, calibrate at batch 1, fix N.

    Calibrating the batch-N graph directly keeps N images' activations per step (NNCF asked for
    80 GB at 8 x 1024 x 2048), and a batch-1 graph cannot be reshaped afterwards: the exporter
    writes every Resize's output size, batch included, as a constant.
    """
    return calibrating and not dynamic and shape[0] > 1


def _rewrites(facts: dict[str, Any]) -> dict[str, list[str]]:
    """The graph rewrites `ocrnet export` recorded in its metadata (the Winograd layers)."""
    names = facts.get("winograd_f4x4_3x3", "")
    return {"winograd_f4x4_3x3": names.split(",")} if names else {}


def _onnx_facts(path: Path) -> tuple[list[int | str], dict[str, Any], dict[str, str] | None,
                                     tuple[list[str], dict[str, list[str]]]]:
    """Input shape, model facts, source checkpoint, and (outputs, rewrites) of an ONNX file
    from `ocrnet export`."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends: a corrupt file, not a bug
        raise OcrnetError(f"{path} is not a readable ONNX model ({type(err).__name__}: "
                          f"{str(err).strip()[:200] or 'corrupt protobuf'}); export it again "
                          "with `ocrnet export`") from None
    check_external_data(path, proto)  # before any backend follows those paths
    inputs = [i for i in proto.graph.input]
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or \
            inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise OcrnetError(f"{path} is not a graph from `ocrnet export` with a float32 "
                          f"{INPUT_NAME!r} input (engine packages take normalized NCHW float32; "
                          "export without --uint8-input)")
    outputs = [o.name for o in proto.graph.output if o.name in GRAPH_OUTPUTS]
    if not outputs:
        raise OcrnetError(f"{path} has none of the outputs {', '.join(GRAPH_OUTPUTS)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else _DYNAMIC_AXES.get(str(i), d.dim_param)
             for i, d in enumerate(dims)]
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        facts = json.loads(props.get("ocrnet", "{}"))
        if not isinstance(facts, dict):
            raise TypeError("not an object")
        model_meta = {"variant": str(facts.get("variant", "unknown")),
                      "num_classes": int(facts.get("num_classes", 19))}
    except (ValueError, TypeError) as err:
        raise OcrnetError(f"{path}: its 'ocrnet' metadata is not what `ocrnet export` writes "
                          f"({err}); export it again") from None
    checkpoint = ({"path": facts["source"], "sha256": facts["source_sha256"]}
                  if "source" in facts and "source_sha256" in facts else None)
    return shape, model_meta, checkpoint, (outputs, _rewrites(facts))


def _manifest(backend: str, precision: Precision, input_shape: list[int | str],
              model_meta: dict[str, Any], source: dict[str, Any], runtime: dict[str, Any],
              calibration: dict[str, Any] | None, outputs: list[str],
              rewrites: dict[str, list[str]]) -> dict[str, Any]:
    from ocrnet.data.cityscapes import CLASSES, PALETTE
    from ocrnet.data.transforms import DEFAULT_SCALE, MEAN, STD

    return {
        "backend": backend,
        "precision": precision.value,
        "runtime": runtime,
        "model": model_meta,
        "input": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32",
                  "shape": input_shape,
                  "dynamic_axes": {str(i): d for i, d in enumerate(input_shape)
                                   if isinstance(d, str)}},
        "outputs": outputs,
        "preprocess": {"color": "RGB", "mean": list(MEAN), "std": list(STD),
                       "resize": {"keep_ratio": True, "scale": list(DEFAULT_SCALE)}},
        "classes": list(CLASSES),
        "palette": [list(c) for c in PALETTE],
        "source": source,
        "calibration": calibration,
        "graph_rewrites": rewrites,
        "tools": _tool_versions("torch", "onnx", "onnxruntime", "openvino", "nncf"),
    }
