"""Deterministic, O(1)-activation random weights for an OCRNet state dict (pure torch).

Shared by `make_golden.py` (run inside the mmseg reference venv) and the parity tests, so both
sides fill the same keys with the same numbers: torch's CPU generator is identical across hosts.
Random BN statistics and affine parameters are on purpose: weights that leave BN at identity
hide bugs in layer order.
"""

from __future__ import annotations

import torch


def randomized_state_dict(reference: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(reference):
        like = reference[key]
        shape = tuple(like.shape)
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.long)
        elif key.endswith("running_mean"):
            out[key] = 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(shape, generator=gen)
        elif len(shape) == 4:  # conv weight: fan-in scaled so activations stay O(1)
            fan_in = shape[1] * shape[2] * shape[3]
            out[key] = torch.randn(shape, generator=gen) * (1.0 / fan_in) ** 0.5
        elif key.endswith("weight"):  # BN gamma
            out[key] = 0.5 + 0.5 * torch.rand(shape, generator=gen)
        else:  # BN beta, classifier bias
            out[key] = 0.1 * torch.randn(shape, generator=gen)
    return out
