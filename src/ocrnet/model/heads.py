"""The two decode heads of mmseg's OCRNet, with mmseg's module names.

`decode_head.0` is an FCN head whose logits are the soft object regions; `decode_head.1` is the
OCR head. In mmseg both heads build their own `resize_concat` of the four backbone outputs; the
two are the same tensor, so the segmentor builds it once and hands it to both (same numbers, one
upsample-and-concat of 270 channels at 1/4 resolution less per image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvModule(nn.Sequential):
    """conv (no bias) + BN + ReLU, named `conv`/`bn` like mmcv's ConvModule."""

    def __init__(self, cin: int, cout: int, kernel: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU(inplace=True)


def resize_concat(features: list[torch.Tensor]) -> torch.Tensor:
    """Upsample every branch to the first branch's size (bilinear) and concatenate channels."""
    size = features[0].shape[2:]
    upsampled = [features[0]] + [
        F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]
    ]
    return torch.cat(upsampled, dim=1)


class FCNHead(nn.Module):
    """mmseg FCNHead(num_convs=1, kernel_size=1, concat_input=False, dropout_ratio=-1)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        # registration order = mmseg's, so state_dict keys come out in the same order
        self.conv_seg = nn.Conv2d(in_channels, num_classes, 1)
        self.convs = nn.Sequential(ConvModule(in_channels, in_channels, 1))

    def forward(self, concat: torch.Tensor) -> torch.Tensor:
        """`concat` = `resize_concat(backbone features)`."""
        return self.conv_seg(self.convs(concat))


class SpatialGather(nn.Module):
    """Class centres: features averaged with per-class softmax weights over all pixels."""

    def forward(self, feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        n, k = probs.shape[:2]
        c = feats.shape[1]
        weights = F.softmax(probs.reshape(n, k, -1), dim=2)  # scale = 1 in mmseg's config
        context = torch.matmul(weights, feats.reshape(n, c, -1).permute(0, 2, 1))  # (N, K, C)
        return context.permute(0, 2, 1).unsqueeze(3)  # (N, C, K, 1)


class ObjectAttentionBlock(nn.Module):
    """Pixels (queries) attend to class centres (keys/values); then a 1x1 bottleneck."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.key_project = nn.Sequential(
            ConvModule(channels, key_channels), ConvModule(key_channels, key_channels)
        )
        self.query_project = nn.Sequential(
            ConvModule(channels, key_channels), ConvModule(key_channels, key_channels)
        )
        self.value_project = ConvModule(channels, key_channels)
        self.out_project = ConvModule(key_channels, channels)
        self.bottleneck = ConvModule(channels * 2, channels)

    def forward(self, feats: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        n, _, h, w = feats.shape
        query = self.query_project(feats).reshape(n, self.key_channels, -1).permute(0, 2, 1)
        key = self.key_project(centres).reshape(n, self.key_channels, -1)
        value = self.value_project(centres).reshape(n, self.key_channels, -1).permute(0, 2, 1)
        sim = F.softmax((self.key_channels**-0.5) * torch.matmul(query, key), dim=-1)
        context = torch.matmul(sim, value).permute(0, 2, 1).reshape(n, -1, h, w)
        context = self.out_project(context)
        return self.bottleneck(torch.cat([context, feats], dim=1))


class OCRHead(nn.Module):
    """mmseg OCRHead(channels=512, ocr_channels=256, scale=1, dropout_ratio=-1)."""

    def __init__(self, in_channels: int, channels: int, ocr_channels: int,
                 num_classes: int) -> None:
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.object_context_block = ObjectAttentionBlock(channels, ocr_channels)
        self.spatial_gather_module = SpatialGather()
        self.bottleneck = ConvModule(in_channels, channels, 3)

    def forward(self, concat: torch.Tensor, soft_regions: torch.Tensor) -> torch.Tensor:
        """`concat` = `resize_concat(backbone features)`; `soft_regions` = FCN head logits."""
        feats = self.bottleneck(concat)
        centres = self.spatial_gather_module(feats, soft_regions)
        return self.conv_seg(self.object_context_block(feats, centres))
