"""Which model block each graph node belongs to, and what it computes: the profile's layer map.

The dynamo exporter records on every ONNX node the torch modules it came from
(`pkg.torch.onnx.name_scopes`, e.g. `model.backbone.stage3.1.fuse_layers.2.0`). `build` keeps
that as `layers.json` in the package (`write_layer_map`), with each node's FLOPs and the
element counts of what it reads and writes at the exported shape, so a profile can join a
runtime's per-node times (OpenVINO's performance counters, ONNX Runtime's profiler: both name
nodes after the ONNX graph) to blocks without the checkpoint.

FLOPs follow `ocrnet.flops`' convention: convolutions and matrix products only (MACs x 2);
other nodes have 0 FLOPs but still move bytes. Counts are per image (the graph's batch divided
out); nodes whose shapes are symbolic (a `--dynamic` export) get no counts.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path
from typing import Any

from ocrnet.fileio import atomic_write_text

LAYER_MAP = "layers.json"
LAYER_MAP_FORMAT = 1

#: The blocks a profile groups time by, in the order the model runs them.
BLOCKS = ("stem", "stage1", "stage2", "stage3", "stage4", "fusion/upsampling", "fcn-aux",
          "ocr-context", "ocr-attention", "classifier", "resize+argmax", "reorders/converts",
          "other")

_STAGE = re.compile(r"model\.backbone\.(?:stage(\d)|transition(\d)|layer1)")


def block_of(scopes: list[str], op: str, final: bool = False) -> str:
    """The block of a node from its module scopes (outermost first) and its op type.

    `final` marks the last resize/argmax (the logits brought to the input size and their
    argmax), which no module scope tells apart from the backbone's upsampling.
    """
    text = " ".join(scopes)
    if final or op in ("ArgMax", "TopK"):
        return "resize+argmax"
    if ".fuse_layers" in text:
        return "fusion/upsampling"
    match = _STAGE.search(text)
    if match:
        stage, transition = match.group(1), match.group(2)
        return f"stage{stage}" if stage else f"stage{int(transition) + 1}" if transition \
            else "stage1"
    if "model.backbone" in text:
        return "stem"
    if "model.decode_head.0" in text:
        return "fcn-aux"
    if "object_context_block" in text:
        return "ocr-attention"
    if "model.decode_head.1.conv_seg" in text:
        return "classifier"
    if "model.decode_head.1" in text:
        return "ocr-context"  # the 3x3 bottleneck and the spatial gather (class centres)
    if scopes[-1:] == ["model"] or op in ("Resize", "Concat"):
        return "fusion/upsampling"  # resize_concat: the four branches at 1/4, concatenated
    return "other"


def _dims(value_info: Any) -> list[int] | None:
    dims = value_info.type.tensor_type.shape.dim
    if not dims or any(not d.HasField("dim_value") for d in dims):
        return None
    return [int(d.dim_value) for d in dims]


def _flops(op: str, shapes_in: list[list[int] | None], shape_out: list[int] | None) -> int:
    """MACs x 2 of a convolution or matrix product (whole batch); 0 for anything else."""
    if op == "Conv" and shape_out and len(shapes_in) > 1 and shapes_in[1]:
        weight = shapes_in[1]  # (Cout, Cin/groups, kh, kw): each output sums Cin/g*kh*kw
        return 2 * math.prod(shape_out) * math.prod(weight[1:])
    if op == "MatMul" and shape_out and len(shapes_in) > 1 and shapes_in[0]:
        return 2 * math.prod(shape_out) * shapes_in[0][-1]
    return 0


def layer_map(onnx_path: str | Path) -> dict[str, Any]:
    """{"format", "nodes": {name: {block, op, scope, flops, act_elems, weight_elems}}}: the
    counts per image."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    first = proto.graph.input[0].type.tensor_type.shape.dim
    if first and not first[0].HasField("dim_value"):
        # A symbolic batch (int8 calibrated at batch 1, fixed later): count one image.
        first[0].dim_value = 1
        del proto.graph.value_info[:]
    proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    g = proto.graph
    shapes = {v.name: _dims(v) for v in [*g.input, *g.value_info, *g.output]}
    weights = {t.name: list(t.dims) for t in g.initializer}
    batch = (shapes.get(g.input[0].name) or [1])[0] or 1
    outputs = {o.name for o in g.output}
    final = _final_nodes(g, outputs)
    via = _fused_into(g)
    nodes: dict[str, Any] = {}
    for node in g.node:
        meta = {p.key: p.value for p in node.metadata_props}
        try:
            scopes = [s for s in ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
                      if s][:-1]  # the last entry names the op itself
        except (ValueError, SyntaxError):
            scopes = []
        ins = [weights.get(i) or shapes.get(i) for i in node.input if i]
        out = shapes.get(node.output[0]) if node.output else None
        act = [shapes.get(i) for i in node.input if i and i not in weights] + \
              [shapes.get(o) for o in node.output]
        known = all(s is not None for s in act)
        nodes[node.name] = {
            "block": block_of(scopes, node.op_type, node.name in final),
            "op": node.op_type,
            "scope": scopes[-1] if scopes else "",
            "flops": _flops(node.op_type, ins, out) // batch if known else None,
            "act_elems": sum(math.prod(s) for s in act) // batch if known else None,
            "weight_elems": sum(math.prod(weights[i]) for i in node.input if i in weights),
            # ONNX Runtime renames the nodes it rewrites after their output (`relu_3_nchwc`).
            "out": node.output[0] if node.output else "",
            "via": via.get(node.name, ""),
        }
    return {"format": LAYER_MAP_FORMAT, "nodes": nodes}


_ELEMENTWISE = ("Relu", "Add", "Clip", "Sigmoid", "Mul")


def _fused_into(graph: Any) -> dict[str, str]:
    """Elementwise node -> the convolution or product it follows (through at most two
    elementwise steps): runtimes fuse such tails into it and name the result after the tail."""
    producer = {o: n for n in graph.node for o in n.output}
    out: dict[str, str] = {}
    for node in graph.node:
        if node.op_type not in _ELEMENTWISE:
            continue
        src = node
        for _ in range(3):
            src = producer.get(src.input[0]) if src.input else None
            if src is None or src.op_type in ("Conv", "MatMul"):
                break
            if src.op_type not in _ELEMENTWISE:
                src = None
                break
        if src is not None and src.op_type in ("Conv", "MatMul"):
            out[node.name] = src.name
    return out


def _final_nodes(graph: Any, outputs: set[str]) -> set[str]:
    """The resize that brings logits to the input size (it feeds the argmax or is an output),
    the argmax and the cast after it."""
    producer = {o: n for n in graph.node for o in n.output}
    final: set[str] = set()
    for node in graph.node:
        if node.op_type == "ArgMax":
            final.add(node.name)
            src = producer.get(node.input[0])
            if src is not None and src.op_type == "Resize":
                final.add(src.name)
        elif node.op_type in ("Resize", "Cast") and outputs & set(node.output):
            final.add(node.name)
    return final


def write_layer_map(onnx_path: str | Path, out_dir: str | Path) -> Path | None:
    """Write `layers.json` for the graph at `onnx_path` into `out_dir` (a package being staged);
    None (and nothing written) for a graph without the exporter's scopes (e.g. a foreign ONNX)."""
    try:
        data = layer_map(onnx_path)
    except ImportError:  # no onnx package (an .onnx source built without the onnx extra)
        return None
    if not any(n["block"] != "other" for n in data["nodes"].values()):
        return None
    path = Path(out_dir) / LAYER_MAP
    atomic_write_text(path, json.dumps(data, separators=(",", ":")) + "\n")
    return path


def read_layer_map(package_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The package's node map, each node also under its output tensor's name ({} for packages
    built before layer maps, or foreign graphs)."""
    path = Path(package_dir) / LAYER_MAP
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    nodes = data.get("nodes", {}) if data.get("format") == LAYER_MAP_FORMAT else {}
    aliases = {n["out"]: n for n in nodes.values() if n.get("out") and n["out"] not in nodes}
    return {**aliases, **nodes}
