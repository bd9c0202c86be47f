"""PyTorch -> ONNX, with an optional check against PyTorch in ONNX Runtime.

We use the dynamo exporter (`torch.onnx.export(..., dynamo=True)`): on HRNet-OCR it gives a graph
of half the nodes of the TorchScript exporter (851 vs 1708 at hr18: BatchNorm folded into the
convolutions, resize sizes constant, no Shape/Gather/Concat chains to compute them), so no
separate simplifier (onnxslim) is needed. The graph's tensors are named `input` -> `labels`
(argmax at the input's resolution, uint8) and `logits` (float32), in the order asked for, or
`lowres` alone: the logits before the model's final resize (`ocrnet.package.LOWRES`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ocrnet import defaults
from ocrnet.errors import OcrnetError
from ocrnet.fileio import atomic_path, prepare_folder
from ocrnet.package import GRAPH_OUTPUTS, INPUT_NAME, LOWRES, OUTPUT_NAMES
from ocrnet.quiet import quiet_dependencies
from ocrnet.shapes import parse_input_shape as parse_shape  # NxCxHxW, kept under its old name

DEFAULT_SHAPE = defaults.INPUT_SHAPE
DEFAULT_OPSET = defaults.OPSET
_DYNAMIC_NAMES = {0: "batch", 2: "height", 3: "width"}


@dataclass
class ExportResult:
    """Where the ONNX file went, what it takes and gives, and the verification numbers."""

    path: Path
    input_shape: list[int | str]
    outputs: list[str]
    uint8_input: bool
    seconds: float
    verify: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class _ExportWrapper(nn.Module):
    """Adds the optional uint8 NHWC RGB input (normalized inside) and the argmax output."""

    def __init__(self, model: nn.Module, outputs: Sequence[str], uint8_input: bool) -> None:
        super().__init__()
        from ocrnet.data.transforms import MEAN, STD

        self.model = model
        self.outputs = tuple(outputs)
        self.uint8_input = uint8_input
        self.register_buffer("mean", torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.uint8_input:
            # Same float32 ops as ocrnet.data.transforms.normalize: subtract, then divide.
            x = (x.permute(0, 3, 1, 2).float() - self.mean) / self.std
        if LOWRES in self.outputs:  # the graph stops before the final resize
            return (self.model.forward_heads(x)[0],)
        logits = self.model(x)
        made = {"logits": logits}
        if "labels" in self.outputs:
            made["labels"] = logits.argmax(1).to(torch.uint8)
        return tuple(made[name] for name in self.outputs)


def _check_outputs(outputs: Sequence[str]) -> list[str]:
    outputs = list(dict.fromkeys(outputs))
    bad = [o for o in outputs if o not in GRAPH_OUTPUTS]
    if bad or not outputs:
        raise OcrnetError(f"unknown output(s) {bad or outputs}; valid: {', '.join(GRAPH_OUTPUTS)}")
    if LOWRES in outputs and len(outputs) > 1:
        others = ", ".join(o for o in outputs if o != LOWRES)
        raise OcrnetError(f"--outputs {LOWRES} stands alone: the labels and full-size logits "
                          f"are computed from it; drop {others}")
    return outputs


def export_onnx(
    model: nn.Module | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    shape: str | Sequence[int] = DEFAULT_SHAPE,
    dynamic: bool = False,
    dynamic_batch: bool = False,
    winograd: bool = False,
    outputs: Sequence[str] = OUTPUT_NAMES,
    uint8_input: bool = False,
    opset: int = DEFAULT_OPSET,
    verify: bool = False,
    trust_checkpoint: bool = False,
    metadata: dict[str, str] | None = None,
) -> ExportResult:
    """Export a model (or a checkpoint path) to ONNX at `out` and run `onnx.checker` on it.

    `shape` is N x 3 x H x W (the example input; the graph's static shape unless `dynamic`,
    which makes batch, height and width symbolic; `dynamic_batch` makes only the batch symbolic,
    so that int8 can be calibrated at batch 1 and the graph fixed to batch N afterwards). With
    `uint8_input` the graph takes raw RGB uint8 N x H x W x 3 and normalizes inside. `winograd`
    rewrites the widest 3x3 convolutions as Winograd F(4x4, 3x3) (`ocrnet.model.winograd`;
    static H and W only; 11% less time per 1024x2048 image in OpenVINO fp32, measured).
    `verify` compares ONNX Runtime with the plain PyTorch model.
    """
    try:
        import onnx
    except ImportError:
        from ocrnet.errors import BackendUnavailableError

        raise BackendUnavailableError("onnx export", "onnx", "onnx") from None
    _check_options(opset, winograd, dynamic)
    dims = parse_shape(shape)
    outputs = _check_outputs(outputs)
    meta = dict(metadata or {})
    model = _float_model(model, meta, trust_checkpoint)
    graph_model = _with_winograd(model, meta) if winograd else model
    wrapper = _ExportWrapper(graph_model, outputs, uint8_input).eval()
    example, want = _example_input(dims, uint8_input, dynamic, dynamic_batch)

    out = Path(out)
    prepare_folder(out.parent)  # a bad --out fails now, not after the export
    start = time.perf_counter()
    proto = _to_onnx(wrapper, example, want, outputs, opset, meta)
    # Saved and checked under a temporary name: a full disk or a failed check leaves no
    # truncated .onnx, and an earlier file at `out` stays as it was.
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    seconds = time.perf_counter() - start

    input_shape = _graph_input_shape(proto)
    _check_symbolic(input_shape, want)
    result = ExportResult(out, input_shape, outputs, uint8_input, seconds, None, meta)
    if verify:
        result.verify = verify_onnx(model, out, dims, uint8_input=uint8_input, dynamic=dynamic)
    return result


def select_outputs(source: str | os.PathLike[str], out: str | os.PathLike[str],
                   outputs: Sequence[str]) -> Path:
    """An `ocrnet export` graph with both outputs, keeping only `outputs`, without exporting
    again (minutes on a loaded machine): `labels` or `logits` drop the other one; `lowres`
    cuts the graph before the final Resize, the graph `export_onnx(outputs=["lowres"])`
    writes. The graphs differ only after the classifier, so packages built from them compare
    exactly what their outputs cost."""
    import onnx
    from onnx.utils import Extractor

    outputs = _check_outputs(outputs)
    model = onnx.load(str(source))
    final = [n for n in model.graph.node if "logits" in n.output]
    if not final or final[0].op_type != "Resize":
        raise OcrnetError(f"{source} has no `logits` output made by a Resize (export it with "
                          "`ocrnet export`, its default outputs)")
    low = final[0].input[0]
    cut = Extractor(model).extract_model([i.name for i in model.graph.input],
                                         [low] if LOWRES in outputs else outputs)
    # The extractor may list the kept nodes out of order; the export's order is topological.
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    nodes = sorted(cut.graph.node, key=lambda n: order[n.name])
    del cut.graph.node[:]
    cut.graph.node.extend(nodes)
    if LOWRES in outputs:  # the classifier's output takes the package's tensor name
        for node in cut.graph.node:
            node.output[:] = [LOWRES if o == low else o for o in node.output]
        cut.graph.output[0].name = LOWRES
    del cut.metadata_props[:]
    cut.metadata_props.extend(model.metadata_props)  # what build reads: the checkpoint, variant
    with atomic_path(Path(out)) as tmp:
        onnx.save(cut, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return Path(out)


def _check_options(opset: int, winograd: bool, dynamic: bool) -> None:
    if opset < 17:
        raise OcrnetError(f"opset {opset} is not supported; use 17 or newer")
    if winograd and dynamic:
        raise OcrnetError("--winograd needs a static height and width (its tiling is fixed "
                          "at export); drop --dynamic or --winograd")


def _with_winograd(model: nn.Module, meta: dict[str, str]) -> nn.Module:
    """`model` with its widest 3x3 convolutions in Winograd form; `meta` records which."""
    from ocrnet.model.winograd import with_winograd

    graph_model, rewritten = with_winograd(model)
    meta["winograd_f4x4_3x3"] = ",".join(rewritten)
    return graph_model


def _check_symbolic(input_shape: list[int | str], want: tuple[int, ...]) -> None:
    """The axes a dynamic export asked for (`want`) must have stayed symbolic in the graph."""
    if want:
        fixed = [i for i in want if isinstance(input_shape[i], int)]
        if fixed:
            raise OcrnetError(f"the exporter fixed input axes {fixed} of a --dynamic export "
                              "(a shape-dependent Python int in the model); export static shapes")


def _float_model(model: nn.Module | str | os.PathLike[str], meta: dict[str, str],
                 trust_checkpoint: bool) -> nn.Module:
    """The fp32 eval-mode model (loaded if `model` is a checkpoint path); fills `meta`."""
    if not isinstance(model, nn.Module):
        from ocrnet.model import model_from_checkpoint
        from ocrnet.package import sha256_file

        meta.setdefault("source_sha256", sha256_file(model))
        meta.setdefault("source", str(model))
        model = model_from_checkpoint(model, trust_checkpoint=trust_checkpoint)
    model = model.float().eval()
    meta.setdefault("variant", getattr(getattr(model, "variant", None), "name", "unknown"))
    meta.setdefault("num_classes", str(getattr(model, "num_classes", 19)))
    return model


def _example_input(dims: Sequence[int], uint8_input: bool, dynamic: bool,
                   dynamic_batch: bool) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The example input and which of its axes are symbolic."""
    n, _, h, w = dims
    if dynamic or dynamic_batch:
        n = max(n, 2)  # an example batch of 1 would be specialised to a constant 1
    example = (torch.zeros((n, h, w, 3), dtype=torch.uint8) if uint8_input
               else torch.zeros((n, 3, h, w)))
    want = ((0, 1, 2) if uint8_input else (0, 2, 3)) if dynamic else (0,) if dynamic_batch else ()
    return example, want


def _to_onnx(wrapper: nn.Module, example: torch.Tensor, want: tuple[int, ...],
             outputs: Sequence[str], opset: int, meta: dict[str, str]) -> Any:
    """The dynamo export as an ONNX ModelProto carrying `meta` (and nothing else) as metadata."""
    dynamic_shapes = {"x": dict.fromkeys(want, torch.export.Dim.DYNAMIC)} if want else None
    with torch.inference_mode(False), torch.no_grad(), quiet_dependencies():
        program = torch.onnx.export(
            wrapper, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
            output_names=list(outputs), dynamic_shapes=dynamic_shapes, verbose=False,
            external_data=False)
    proto = program.model_proto
    del proto.metadata_props[:]  # the exporter's per-node provenance is noise for users
    proto.metadata_props.add(key="ocrnet", value=json.dumps(meta, sort_keys=True))
    return proto


def _graph_input_shape(proto: Any) -> list[int | str]:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def verify_onnx(model: nn.Module, path: str | os.PathLike[str], shape: Sequence[int], *,
                uint8_input: bool = False, dynamic: bool = False, seed: int = 0
                ) -> dict[str, Any]:
    """Run ONNX Runtime and PyTorch on the same random input; max|Δ| logits, label agreement.

    A dynamic graph is also checked at a second shape (batch + 1, H and W + 32), which catches
    sizes the exporter silently froze.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        from ocrnet.errors import BackendUnavailableError

        raise BackendUnavailableError("onnxruntime (--verify)", "onnxruntime", "onnxruntime") \
            from None
    from ocrnet.data.transforms import normalize

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(seed)
    n, _, h, w = shape
    shapes = [(n, h, w)] + ([(n + 1, h + 32, w + 32)] if dynamic else [])
    checks = []
    for n_, h_, w_ in shapes:
        # Image-like input (uint8 RGB, smooth-ish) so argmax ties are as rare as on real data.
        rgb = rng.integers(0, 256, size=(n_, h_, w_, 3), dtype=np.uint8)
        x = np.stack([normalize(img[:, :, ::-1]) for img in rgb])
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = dict(zip(names, session.run(None, {INPUT_NAME: rgb if uint8_input else x}),
                       strict=True))
        if LOWRES in got:  # compared as the engines use it: resized to the input's size
            from ocrnet.data.transforms import resize_logits

            got = {"logits": resize_logits(got[LOWRES], (h_, w_))}
        check: dict[str, Any] = {"shape": [n_, 3, h_, w_]}
        if "logits" in got:
            diff = got["logits"] - ref
            check["logits_max_abs_diff"] = float(np.abs(diff).max())
            check["logits_rel_l2"] = float(np.linalg.norm(diff) / np.linalg.norm(ref))
        labels = got["labels"] if "labels" in got else got["logits"].argmax(1)
        check["label_agreement"] = float((labels == ref.argmax(1)).mean())
        checks.append(check)
    worst = min(c["label_agreement"] for c in checks)
    return {"checks": checks, "label_agreement": worst,
            "logits_max_abs_diff": max(c.get("logits_max_abs_diff", 0.0) for c in checks)}


def check_external_data(path: str | os.PathLike[str], proto: Any) -> list[Path]:
    """The external-data files an ONNX graph refers to, each checked to be a regular file
    inside the graph's own folder; `OcrnetError` for an absolute path, `..`, a link out of the
    folder or a missing file. Nothing outside the folder the user named is ever read."""
    path = Path(path)
    folder = path.parent.resolve()
    found: dict[str, Path] = {}
    for tensor in _tensors(proto.graph):
        if tensor.data_location != 1:  # onnx.TensorProto.EXTERNAL
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        if location in found:
            continue
        target = (folder / location).resolve()
        if (not location or os.path.isabs(location) or "\\" in location
                or ".." in Path(location).parts or not target.is_relative_to(folder)):
            raise OcrnetError(
                f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, outside the "
                f"ONNX file's folder {folder}; refusing to read it (keep external data next to "
                "the .onnx, or save the model as one file)")
        if not target.is_file():
            raise OcrnetError(f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, "
                              f"which is not a file in {folder}")
        found[location] = target
    return list(found.values())


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers, sparse ones, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)
