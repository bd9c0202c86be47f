"""Winograd F(4x4, 3x3) for the big 3x3 convolutions, as plain graph ops any engine runs.

The OCR head's 3x3 bottleneck (270 -> 512 channels at 1/4 resolution) is about 38% of
OCRNet-HR18's FLOPs. Winograd's minimal filtering (Lavin & Gray, 2016) computes each 4x4 output
tile from a 6x6 input tile with 36 multiplies per channel pair instead of 144: the convolution
becomes 36 independent channel-mixing matrix products (one grouped 1x1 convolution) between
two cheap fixed linear transforms (a depthwise 6x6/stride-4 convolution and a 1x1 grouped
convolution + depth-to-space). CPU engines (oneDNN, OpenVINO) no longer ship Winograd kernels,
so it is written into the exported graph instead.

Folding the following BatchNorm into the transformed weights keeps one bias add. The result is
the same function up to float32 rounding (relative error ~3e-6 on the layer, measured against
float64): it is a deployment rewrite of an eval-mode model, never used for training.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

# F(4x4, 3x3) with interpolation points 0, +-1, +-2, infinity (Lavin & Gray, table 1).
_BT = torch.tensor([[4, 0, -5, 0, 1, 0],
                    [0, -4, -4, 1, 1, 0],
                    [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0],
                    [0, 2, -1, -2, 1, 0],
                    [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
_G = torch.tensor([[1 / 4, 0, 0],
                   [-1 / 6, -1 / 6, -1 / 6],
                   [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6],
                   [1 / 24, -1 / 12, 1 / 6],
                   [0, 0, 1]], dtype=torch.float64)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0],
                    [0, 1, -1, 2, -2, 0],
                    [0, 1, 1, 4, 4, 0],
                    [0, 1, -1, 8, -8, 1]], dtype=torch.float64)
TILE = _AT.shape[0]  # output tile side (4)
_IN = _BT.shape[0]  # input tile side (6)

# Only convolutions at least this wide are rewritten. Thresholds of 64 and 128 (which also take
# HRNet's branch convolutions) measured no faster than 256 for the whole model (OpenVINO fp32,
# 512x1024); 256 keeps the rewrite to the one layer that dominates.
MIN_CHANNELS = 256


class WinogradConv3x3(nn.Module):
    """A 3x3, stride 1, padding 1 convolution (+ optional folded BatchNorm) via F(4x4, 3x3)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        cout, cin, kh, kw = weight.shape
        if (kh, kw) != (3, 3):
            raise ValueError(f"Winograd F(4x4, 3x3) needs a 3x3 kernel, got {kh}x{kw}")
        self.cin, self.cout = cin, cout
        k = _IN * _IN
        # input transform: channel c's 36 outputs are B^T d B over its 6x6 tile
        basis = torch.einsum("ia,jb->ijab", _BT, _BT).reshape(k, 1, _IN, _IN)
        self.register_buffer("input_transform", basis.repeat(cin, 1, 1, 1).float())
        # transformed weights G g G^T, one (cout x cin) matrix per tile position
        u = torch.einsum("ia,ocab,jb->ijoc", _G, weight.double(), _G).reshape(k * cout, cin, 1, 1)
        self.register_buffer("weight", u.float())
        # output transform: A^T m A, 16 outputs per channel from its 36 products
        at = torch.einsum("xi,yj->xyij", _AT, _AT).reshape(TILE * TILE, k, 1, 1)
        self.register_buffer("output_transform", at.repeat(cout, 1, 1, 1).float())
        b = torch.zeros(cout, dtype=torch.float64) if bias is None else bias.double()
        self.register_buffer("bias", b.repeat_interleave(TILE * TILE).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        k = _IN * _IN
        pad_h, pad_w = (-h) % TILE, (-w) % TILE
        v = F.conv2d(F.pad(x, (1, 1 + pad_w, 1, 1 + pad_h)), self.input_transform, stride=TILE,
                     groups=c)
        th, tw = v.shape[-2:]
        # channel-major (c, k) -> position-major (k, c): one group per tile position
        v = v.reshape(n, c, k, th, tw).transpose(1, 2).reshape(n, k * c, th, tw)
        m = F.conv2d(v, self.weight, groups=k)
        m = m.reshape(n, k, self.cout, th, tw).transpose(1, 2).reshape(n, self.cout * k, th, tw)
        y = F.pixel_shuffle(F.conv2d(m, self.output_transform, self.bias, groups=self.cout), TILE)
        return y[:, :, :h, :w] if pad_h or pad_w else y

    @classmethod
    def from_conv_bn(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None) -> WinogradConv3x3:
        """The convolution with an eval-mode BatchNorm after it folded in."""
        weight = conv.weight.detach().double()
        bias = conv.bias.detach().double() if conv.bias is not None else None
        if bn is not None:
            scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
            shift = bn.bias.detach().double() - bn.running_mean.double() * scale
            weight = weight * scale[:, None, None, None]
            bias = shift if bias is None else bias * scale + shift
        return cls(weight, bias)


def eligible(conv: nn.Module, min_channels: int = MIN_CHANNELS) -> bool:
    """A plain 3x3 / stride 1 / padding 1 / dense convolution at least `min_channels` wide."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)
            and conv.stride == (1, 1) and conv.padding == (1, 1) and conv.dilation == (1, 1)
            and conv.groups == 1 and min(conv.in_channels, conv.out_channels) >= min_channels)


def with_winograd(model: nn.Module, min_channels: int = MIN_CHANNELS
                  ) -> tuple[nn.Module, list[str]]:
    """A copy of an eval-mode model whose eligible conv (+ BN) pairs run as Winograd.

    Conv + BN pairs are found as consecutive `conv`, `bn` children (mmcv's ConvModule); a conv
    without a BN after it is rewritten alone. Returns the copy and the rewritten modules' names.
    """
    model = copy.deepcopy(model).eval()
    rewritten: list[str] = []
    for name, parent in list(model.named_modules()):
        children = list(parent.named_children())
        for i, (child_name, child) in enumerate(children):
            if not eligible(child, min_channels):
                continue
            following = children[i + 1][1] if i + 1 < len(children) else None
            bn = following if isinstance(following, nn.BatchNorm2d) else None
            setattr(parent, child_name, WinogradConv3x3.from_conv_bn(child, bn))
            if bn is not None:
                setattr(parent, children[i + 1][0], nn.Identity())
            rewritten.append(f"{name}.{child_name}" if name else child_name)
    return model, rewritten
