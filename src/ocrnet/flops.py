"""FLOP count of a model at an input shape: convolutions and matrix products, MACs x 2.

The count runs the model once under `torch.utils.flop_counter.FlopCounterMode` on the `meta`
device, so it allocates no memory and computes nothing (about a second for hr18 at 1024x2048).
Only conv/matmul-family ops are counted (the convention of papers and of trtexec-style GFLOP/s);
batch norm, activations, softmax and the final bilinear resize add a few percent and are left out.
Every op in OCRNet is linear in the batch size, so one count at batch 1 serves every batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ocrnet.errors import OcrnetError


@dataclass(frozen=True)
class FlopCount:
    """FLOPs (= 2 x multiply-accumulates) for one image, in total and per op type."""

    flops: int
    by_op: dict[str, int]

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def count_model_flops(model: object, shape: tuple[int, int, int, int]) -> FlopCount:
    """Count one forward pass of `model` (a torch.nn.Module) on an NCHW input of `shape`.

    The model is counted where it lives; pass a meta-device model to count without computing.
    Returns the count per image (divided by the batch in `shape`).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = next(iter(model.parameters()), torch.empty(0)).device  # type: ignore[attr-defined]
    x = torch.zeros(shape, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)  # type: ignore[operator]
    by_op = {str(op).removeprefix("aten."): int(n)
             for op, n in counter.get_flop_counts().get("Global", {}).items()}
    batch = shape[0]
    return FlopCount(flops=int(counter.get_total_flops()) // batch,
                     by_op={k: v // batch for k, v in sorted(by_op.items())})


@functools.lru_cache(maxsize=32)
def count_flops(variant: str, height: int, width: int, num_classes: int = 19) -> FlopCount:
    """FLOPs per image of `build_model(variant)` at `height` x `width`, counted once per shape."""
    import torch

    try:
        from ocrnet.model import build_model
    except ImportError as err:  # the model package is still being written
        raise OcrnetError(f"cannot count FLOPs: ocrnet.model.build_model unavailable ({err})") \
            from None
    try:
        with torch.device("meta"):
            model = build_model(variant, num_classes=num_classes).eval()
        return count_model_flops(model, (1, 3, height, width))
    except (NotImplementedError, RuntimeError):
        # An op without a meta kernel: count on real (uninitialised) tensors instead, slower.
        model = build_model(variant, num_classes=num_classes).eval()
        return count_model_flops(model, (1, 3, height, width))
