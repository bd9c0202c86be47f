"""`compare --explain`: where a low-precision model's damage lands, and which layer made it.

Three views per model, all against the comparison's reference:

* **label flips**: a (C, C) matrix `[reference class, model class]` over every pixel whose
  label changed, and the flip rate on class boundaries (a pixel with a differently labelled
  4-neighbour in the reference) against interiors: rounding noise flips boundary pixels, a
  real fault flips interiors too;
* **a heat-map** of where flips land on the sample image that has the most of them;
* **per-layer divergence** for ONNX-based packages: every convolution's output tensor in the
  float graph and in the package's graph (the exporter's tensor names survive OpenVINO's IR
  and ORT's QDQ graph), as relative L2 error and SQNR. Error accumulates downstream, so layers
  are ranked by the error each one *adds*: its relative error minus the largest of the
  convolutions feeding it (graph input: 0). A wrong node ranks first; the layers after it only
  carry its error on.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocrnet.errors import OcrnetError

DEFAULT_TOP_K = 10
#: Tapped tensors per run are grouped to fit this many bytes (float32) of outputs.
TAP_MEMORY = 1 << 30


# --- label flips ----------------------------------------------------------------------------
def boundary_mask(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a differently labelled 4-neighbour."""
    edge = np.zeros(labels.shape, dtype=bool)
    dv = labels[1:, :] != labels[:-1, :]
    dh = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= dv
    edge[:-1, :] |= dv
    edge[:, 1:] |= dh
    edge[:, :-1] |= dh
    return edge


@dataclass
class FlipTally:
    """Label flips of one model against the reference, accumulated image by image."""

    num_classes: int
    matrix: np.ndarray = field(init=False)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("boundary", "boundary_flips", "interior", "interior_flips"), 0))
    sample: tuple[int, np.ndarray, np.ndarray] | None = None  # (flips, rgb, flip mask)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, ref: np.ndarray, got: np.ndarray, rgb: np.ndarray | None = None) -> None:
        n = self.num_classes
        flip = ref != got
        pairs = ref[flip].astype(np.intp) * n + np.minimum(got[flip], n - 1).astype(np.intp)
        self.matrix += np.bincount(pairs, minlength=n * n).reshape(n, n)
        edge = boundary_mask(ref)
        self.counts["boundary"] += int(edge.sum())
        self.counts["boundary_flips"] += int((flip & edge).sum())
        self.counts["interior"] += int((~edge).sum())
        self.counts["interior_flips"] += int((flip & ~edge).sum())
        total = int(flip.sum())
        if rgb is not None and (self.sample is None or total > self.sample[0]):
            self.sample = (total, rgb, flip)

    def to_json(self, class_names: Sequence[str]) -> dict[str, Any]:
        c = self.counts
        pairs = [(int(self.matrix[i, j]), class_names[i], class_names[j])
                 for i in range(self.num_classes) for j in range(self.num_classes)
                 if self.matrix[i, j]]
        return {
            "flip_matrix": self.matrix.tolist(),
            "flips": int(self.matrix.sum()),
            "flip_rate_boundary": c["boundary_flips"] / c["boundary"] if c["boundary"] else 0.0,
            "flip_rate_interior": c["interior_flips"] / c["interior"] if c["interior"] else 0.0,
            "boundary_share_of_flips": (c["boundary_flips"] / max(1, c["boundary_flips"]
                                                                   + c["interior_flips"])),
            "top_flips": [{"from": a, "to": b, "pixels": k}
                          for k, a, b in sorted(pairs, reverse=True)[:10]],
        }


def flip_heatmap(rgb: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """RGB: the image dimmed to grey, flip density (blurred flips) as a heat colour map,
    and the flipped pixels themselves in red."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    base = np.repeat(grey[:, :, None] // 2 + 64, 3, axis=2)
    sigma = max(1.0, min(flips.shape) / 100)
    density = cv2.GaussianBlur(flips.astype(np.float32), (0, 0), sigma)
    if density.max() > 0:
        density /= density.max()
    heat = cv2.applyColorMap((density * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[:, :, ::-1]
    alpha = np.clip(density * 1.5, 0, 1)[:, :, None]
    out = base * (1 - alpha) + heat * alpha
    out[flips] = (255, 48, 48)  # every flipped pixel itself, visible however sparse
    return out.astype(np.uint8)


# --- per-layer divergence -------------------------------------------------------------------
@dataclass(frozen=True)
class Tap:
    """A convolution's output tensor: where divergence is measured."""

    tensor: str
    layer: str  # module path from the weight's name, e.g. backbone.stage3.3.fuse_layers.0.2.0
    block: str  # its first three components, e.g. backbone.stage3.3
    feeds_from: tuple[str, ...]  # nearest tapped tensors upstream (empty: the graph input)


def conv_taps(model: Any) -> list[Tap]:
    """Every Conv output of an `ocrnet export` ONNX graph, with its nearest Conv ancestors."""
    producer = {out: node for node in model.graph.node for out in node.output}
    inits = {i.name for i in model.graph.initializer}
    convs = {n.output[0]: n for n in model.graph.node if n.op_type == "Conv"}
    memo: dict[str, frozenset[str]] = {}

    def upstream(tensor: str) -> frozenset[str]:
        # Iterative: HRNet is deep enough to exhaust Python's recursion on a recursive walk.
        stack, order = [tensor], []
        while stack:
            t = stack.pop()
            if t in memo or t in inits or not t:
                continue
            order.append(t)
            node = producer.get(t)
            if node is not None and t not in convs:
                stack.extend(i for i in node.input if i not in memo)
        for t in reversed(order):
            node = producer.get(t)
            if t in convs or node is None:
                memo[t] = frozenset({t}) if t in convs else frozenset()
            else:
                memo[t] = frozenset().union(*(memo.get(i, frozenset()) for i in node.input
                                              if i and i not in inits))
        return memo.get(tensor, frozenset())

    taps = []
    for out, node in convs.items():
        weight = node.input[1]
        layer = weight[:-len(".weight")] if weight.endswith(".weight") else node.name
        layer = layer.removeprefix("model.")
        feeds = frozenset().union(*(upstream(i) for i in node.input if i not in inits))
        taps.append(Tap(out, layer, ".".join(layer.split(".")[:3]), tuple(sorted(feeds))))
    return taps


def _groups(taps: Sequence[Tap], sizes: dict[str, int], budget: int) -> list[list[str]]:
    groups, group, used = [], [], 0
    for tap in taps:
        size = sizes.get(tap.tensor, 0)
        if group and used + size > budget:
            groups.append(group)
            group, used = [], 0
        group.append(tap.tensor)
        used += size
    return groups + ([group] if group else [])


class _OrtTaps:
    """Intermediate tensors of an ONNX graph by name, through ONNX Runtime (CPU)."""

    def __init__(self, path: Path) -> None:
        import onnx

        self.model = onnx.load(str(path))
        self.names = {o for n in self.model.graph.node for o in n.output}

    def run(self, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
        import onnx
        import onnxruntime as ort

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        del model.graph.output[:]
        model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT,
                                                                     None) for n in names)
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x}),
                        strict=True))


class _OvTaps:
    """Intermediate tensors of an OpenVINO IR by (ONNX) tensor name, under a precision hint."""

    def __init__(self, xml: Path, hint: str) -> None:
        import openvino as ov

        self.core, self.xml, self.hint = ov.Core(), xml, hint
        model = self.core.read_model(str(xml))
        self.names = {n for op in model.get_ops() for out in op.outputs() for n in out.names}

    def run(self, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
        model = self.core.read_model(str(self.xml))
        model.add_outputs(names)
        compiled = self.core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": self.hint})
        result = compiled(x)
        out = {}
        for port, value in result.items():
            for name in port.get_names() & set(names):
                out[name] = np.asarray(value, dtype=np.float32)
        return out


def _runner(path: Path) -> Any:
    """Taps for a model path: .onnx, or a package holding model.onnx or model.xml."""
    if path.suffix == ".onnx":
        return _OrtTaps(path)
    from ocrnet.package import read_package

    package = read_package(path)
    if "model.onnx" in package.files:
        if package.precision.value == "fp16":
            raise OcrnetError("per-layer divergence of an fp16 ONNX Runtime package needs CUDA")
        return _OrtTaps(package.file("model.onnx"))
    if "model.xml" in package.files:
        from ocrnet.engines.openvino import hint_of

        return _OvTaps(package.file("model.xml"), hint_of(package.precision))
    raise OcrnetError(f"{path} is not ONNX-based (no model.onnx or model.xml): no per-layer "
                      "divergence")


def layer_divergence(float_onnx: Path, model: Path, inputs: Sequence[np.ndarray], *,
                     top_k: int = DEFAULT_TOP_K, memory: int = TAP_MEMORY) -> dict[str, Any]:
    """Rank the float graph's convolutions by the relative L2 error each adds in `model`."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(float_onnx)))
    taps = conv_taps(graph)
    ref, low = _OrtTaps(float_onnx), _runner(model)
    shared = [t for t in taps if t.tensor in low.names]
    sizes = _tensor_bytes(graph, inputs[0].shape)
    sq_diff = dict.fromkeys((t.tensor for t in shared), 0.0)
    sq_ref = dict(sq_diff)
    for x in inputs:
        for names in _groups(shared, sizes, memory):
            want, got = ref.run(names, x), low.run(names, x)
            for name in names:
                a = want[name].astype(np.float64)
                d = got[name].astype(np.float64) - a
                sq_diff[name] += float((d * d).sum())
                sq_ref[name] += float((a * a).sum())
    rel = {n: math.sqrt(sq_diff[n] / sq_ref[n]) if sq_ref[n] else 0.0 for n in sq_diff}
    rows = []
    for t in shared:
        before = max((rel.get(f, 0.0) for f in t.feeds_from), default=0.0)
        rows.append({"layer": t.layer, "block": t.block, "tensor": t.tensor,
                     "rel_err": rel[t.tensor], "sqnr_db": _sqnr(rel[t.tensor]),
                     "added_rel_err": rel[t.tensor] - before})
    rows.sort(key=lambda r: r["added_rel_err"], reverse=True)
    return {"float_graph": str(float_onnx), "layers_compared": len(shared),
            "layers_missing": len(taps) - len(shared), "images": len(inputs),
            "ranking": "relative L2 error added by the layer (its own minus its inputs')",
            "worst": rows[:top_k], "blocks": _blocks(rows)[:top_k]}


def _blocks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Blocks ranked by the largest error one of their layers adds."""
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["block"] not in best or r["added_rel_err"] > best[r["block"]]["added_rel_err"]:
            best[r["block"]] = {"block": r["block"], "added_rel_err": r["added_rel_err"],
                                "worst_layer": r["layer"]}
    return sorted(best.values(), key=lambda b: b["added_rel_err"], reverse=True)


def _sqnr(rel: float) -> float | None:
    """Signal-to-quantization-noise ratio in dB (None where the outputs are identical)."""
    return None if rel <= 0 else round(-20 * math.log10(rel), 2)


def _tensor_bytes(graph: Any, input_shape: tuple[int, ...]) -> dict[str, int]:
    out = {}
    for v in graph.graph.value_info:
        dims = [d.dim_value if d.HasField("dim_value") else max(input_shape)
                for d in v.type.tensor_type.shape.dim]
        out[v.name] = 4 * int(np.prod(dims or [1]))
    return out


def float_graph_for(reference: Path, model: Path, workdir: Path) -> Path:
    """The float ONNX graph to compare `model` against: the reference's own graph where it
    has one (an .onnx file, an ONNX Runtime fp32 package), else the reference checkpoint
    exported at the package's input shape (no Winograd: int8 graphs never use it)."""
    from ocrnet.package import is_package, read_package

    if reference.suffix == ".onnx":
        return reference
    if is_package(reference):
        ref = read_package(reference)
        if "model.onnx" in ref.files and ref.precision.value == "fp32":
            return ref.file("model.onnx")
        raise OcrnetError(f"reference {reference} has no fp32 ONNX graph; pass a checkpoint or "
                          "an .onnx file as --reference for per-layer divergence")
    from ocrnet.export import export_onnx

    meta = read_package(model).meta if is_package(model) else {}
    shape = (meta.get("input") or {}).get("shape")
    if not shape or not all(isinstance(d, int) for d in shape):
        raise OcrnetError(f"{model} has no static input shape to export the reference at")
    out = workdir / "reference.onnx"
    if not out.exists():
        export_onnx(str(reference), out, shape=shape, winograd=False)
    return out


def explain_models(reference: Path, models: Sequence[Path], inputs: Sequence[np.ndarray], *,
                   top_k: int = DEFAULT_TOP_K) -> list[dict[str, Any] | None]:
    """Per-layer divergence of each ONNX-based model (None, with a note, for the others)."""
    out: list[dict[str, Any] | None] = []
    with tempfile.TemporaryDirectory(prefix="ocrnet-explain-") as tmp:
        for model in models:
            try:
                float_onnx = float_graph_for(reference, model, Path(tmp))
                out.append(layer_divergence(float_onnx, model, inputs, top_k=top_k))
            except OcrnetError as err:
                out.append({"skipped": str(err)})
    return out


def attach(report: dict[str, Any], tallies: Sequence[FlipTally], reference: Path,
           models: Sequence[Path | None], inputs: Sequence[np.ndarray], out_dir: Path, *,
           top_k: int = DEFAULT_TOP_K) -> Path:
    """Add each model's `explain` block to a compare report; write the heat-maps and the
    Markdown summary into `out_dir` (atomically) and return the Markdown's path."""
    from ocrnet.data.cityscapes import CLASSES
    from ocrnet.fileio import atomic_write_text
    from ocrnet.visualize import side_by_side, write_png

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [m for m in models if m is not None]
    layers = iter(explain_models(reference, paths, inputs, top_k=top_k))
    for i, (row, tally, model) in enumerate(zip(report["models"], tallies, models,
                                                strict=True)):
        block: dict[str, Any] = {"flips": tally.to_json(CLASSES)}
        block["layers"] = next(layers) if model is not None else {
            "skipped": "an in-memory engine: no graph to tap"}
        if tally.sample is not None:
            _, rgb, flip = tally.sample
            png = out_dir / f"flips_{i}_{_slug(row['model'])}.png"
            write_png(png, side_by_side(rgb, flip_heatmap(rgb, flip),
                                        titles=["image", f"flips ({int(flip.sum())} px)"]))
            block["heatmap"] = str(png)
        row["explain"] = block
    md = out_dir / "explain.md"
    atomic_write_text(md, markdown(report))
    return md


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in Path(text).name.lower()).strip("-")[:60]


def markdown(report: dict[str, Any]) -> str:
    """The explain part of a compare report as Markdown: flips and worst layers per model."""
    from ocrnet.tables import markdown_table

    lines = [f"# compare --explain: {report['images']} image(s) vs `{report['reference']}`", ""]
    for row in report["models"]:
        ex = row.get("explain") or {}
        flips = ex.get("flips", {})
        lines += [f"## {row['model']} ({row.get('backend')} {row.get('precision')})", "",
                  f"- pixel agreement {100 * row['pixel_agreement']:.3f}%, flips "
                  f"{flips.get('flips', 0)}: boundary rate "
                  f"{100 * flips.get('flip_rate_boundary', 0):.3f}%, interior rate "
                  f"{100 * flips.get('flip_rate_interior', 0):.4f}%", ""]
        if flips.get("top_flips"):
            lines += [markdown_table(["from (reference)", "to (model)", "pixels"],
                                     [[f["from"], f["to"], str(f["pixels"])]
                                      for f in flips["top_flips"]], left=2), ""]
        layers = ex.get("layers") or {}
        if layers.get("worst"):
            lines += [markdown_table(
                ["rank", "layer", "block", "added rel. err", "rel. err", "SQNR dB"],
                [[str(i + 1), r["layer"], r["block"], f"{r['added_rel_err']:.2e}",
                  f"{r['rel_err']:.2e}", "inf" if r["sqnr_db"] is None else f"{r['sqnr_db']}"]
                 for i, r in enumerate(layers["worst"])], left=3), ""]
        elif layers.get("skipped"):
            lines += [f"per-layer divergence skipped: {layers['skipped']}", ""]
        if ex.get("heatmap"):
            lines += [f"![where flips land]({os.path.basename(ex['heatmap'])})", ""]
    return "\n".join(lines)
