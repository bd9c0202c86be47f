"""OCRNet = HRNet backbone + cascade of FCN (soft regions) and OCR heads (mmseg's
CascadeEncoderDecoder with num_stages=2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ocrnet.model.heads import FCNHead, OCRHead, resize_concat
from ocrnet.model.hrnet import HRNet
from ocrnet.model.variants import Variant


class OCRNet(nn.Module):
    """`forward(x)` = mmseg `encode_decode`: (N, num_classes, H, W) logits at the input's H, W."""

    def __init__(self, variant: Variant, num_classes: int = 19) -> None:
        super().__init__()
        self.variant = variant
        self.num_classes = num_classes
        self.backbone = HRNet(variant)
        cat = variant.concat_channels
        self.decode_head = nn.ModuleList([
            FCNHead(cat, num_classes),
            OCRHead(cat, variant.ocr_head_channels, variant.ocr_channels, num_classes),
        ])

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(OCR logits, FCN aux logits) at 1/4 of the input size; training uses both."""
        concat = resize_concat(self.backbone(x))
        soft_regions = self.decode_head[0](concat)
        return self.decode_head[1](concat, soft_regions), soft_regions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, _ = self.forward_heads(x)
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)
