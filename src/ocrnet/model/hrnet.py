"""HRNetV2 backbone with mmseg's module tree, so mmseg state_dict keys load unchanged.

Names follow mmseg's `HRNet`: `conv1/bn1/conv2/bn2` stem, `layer1` of Bottlenecks,
`transition{1,2,3}`, `stage{2,3,4}` of HRModules with `branches` and `fuse_layers`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ocrnet.model.variants import StageConfig, Variant


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1,
             relu: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "BASIC": BasicBlock,
    "BOTTLENECK": Bottleneck,
}


def _make_blocks(block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int,
                 count: int) -> nn.Sequential:
    downsample = None
    if inplanes != planes * block.expansion:
        downsample = _conv_bn(inplanes, planes * block.expansion, 1)
    layers = [block(inplanes, planes, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(count - 1)]
    return nn.Sequential(*layers)


class _UpsampleFuse(nn.Sequential):
    """1x1 conv + BN, then x2^k bilinear upsampling (mmseg's `Upsample`: size = int(h * 2^k))."""

    def __init__(self, cin: int, cout: int, factor: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        # mmseg computes int(h * 2.0 ** k); with an integer factor the product is the same number
        # and stays symbolic when exported with dynamic H/W (int(float) would freeze it).
        size = (x.shape[-2] * self.factor, x.shape[-1] * self.factor)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class HRModule(nn.Module):
    """Parallel branches followed by all-to-all fusion across resolutions."""

    def __init__(self, cfg: StageConfig, in_channels: list[int]) -> None:
        super().__init__()
        block = _BLOCKS[cfg.block]
        self.num_branches = cfg.num_branches
        self.branches = nn.ModuleList()
        for i in range(self.num_branches):
            self.branches.append(
                _make_blocks(block, in_channels[i], cfg.num_channels[i], cfg.num_blocks[i])
            )
            in_channels[i] = cfg.num_channels[i] * block.expansion
        self.fuse_layers = self._make_fuse_layers(in_channels) if self.num_branches > 1 else None
        self.relu = nn.ReLU(inplace=False)

    def _make_fuse_layers(self, ch: list[int]) -> nn.ModuleList:
        fuse_layers = nn.ModuleList()
        for i in range(self.num_branches):
            row = nn.ModuleList()
            for j in range(self.num_branches):
                if j > i:
                    row.append(_UpsampleFuse(ch[j], ch[i], 2 ** (j - i)))
                elif j == i:
                    row.append(None)
                else:
                    steps = [
                        _conv_bn(ch[j], ch[j], 3, stride=2, relu=True) for _ in range(i - j - 1)
                    ]
                    steps.append(_conv_bn(ch[j], ch[i], 3, stride=2))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(row)
        return fuse_layers

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        if self.fuse_layers is None:
            return xs
        fused = []
        # Summation order matches mmseg's so that float32 results agree bit-for-bit-ish.
        for i, row in enumerate(self.fuse_layers):
            y: torch.Tensor | None = None
            for j, layer in enumerate(row):
                if j == i:
                    term = xs[j]
                elif j > i:
                    # upsampling by 2^k can overshoot odd sizes: resize again to the exact size
                    term = F.interpolate(layer(xs[j]), size=xs[i].shape[2:], mode="bilinear",
                                         align_corners=False)
                else:
                    term = layer(xs[j])
                y = term if y is None else y + term
            fused.append(self.relu(y))
        return fused


class HRNet(nn.Module):
    """HRNetV2: returns the four branch outputs (strides 4, 8, 16, 32)."""

    def __init__(self, variant: Variant, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)

        s1, *later = variant.stages
        block = _BLOCKS[s1.block]
        self.layer1 = _make_blocks(block, 64, s1.num_channels[0], s1.num_blocks[0])
        pre = [s1.num_channels[0] * block.expansion]
        for index, cfg in enumerate(later, start=1):
            cur = [c * _BLOCKS[cfg.block].expansion for c in cfg.num_channels]
            self.add_module(f"transition{index}", self._make_transition(pre, cur))
            modules = []
            for _ in range(cfg.num_modules):
                modules.append(HRModule(cfg, list(cur)))
            self.add_module(f"stage{index + 1}", nn.Sequential(*modules))
            pre = cur
        self.out_channels = tuple(pre)

    @staticmethod
    def _make_transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
        layers = nn.ModuleList()
        for i, cout in enumerate(cur):
            if i < len(pre):
                layers.append(None if cout == pre[i] else _conv_bn(pre[i], cout, 3, relu=True))
            else:
                steps = []
                for j in range(i + 1 - len(pre)):
                    cin = pre[-1]
                    steps.append(_conv_bn(cin, cout if j == i - len(pre) else cin, 3, 2, relu=True))
                layers.append(nn.Sequential(*steps))
        return layers

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for index in (1, 2, 3):
            transition = getattr(self, f"transition{index}")
            # As in mmseg, every transition that exists reads the previous stage's last output.
            xs = [ys[i] if t is None else t(ys[-1]) for i, t in enumerate(transition)]
            ys = getattr(self, f"stage{index + 1}")(xs)
        return ys
