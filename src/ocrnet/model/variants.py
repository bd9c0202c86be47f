"""The OCRNet variants mmseg ships for Cityscapes, as one table of frozen configs."""

from __future__ import annotations

from dataclasses import dataclass

from ocrnet.errors import OcrnetError


@dataclass(frozen=True)
class StageConfig:
    num_modules: int
    block: str  # "BASIC" or "BOTTLENECK"
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]

    @property
    def num_branches(self) -> int:
        return len(self.num_channels)


@dataclass(frozen=True)
class Variant:
    name: str
    stages: tuple[StageConfig, StageConfig, StageConfig, StageConfig]
    mmseg_config: str
    ocr_channels: int = 256
    ocr_head_channels: int = 512

    @property
    def branch_channels(self) -> tuple[int, ...]:
        return self.stages[-1].num_channels

    @property
    def concat_channels(self) -> int:
        """Channels of the resize_concat feature both heads start from (270 for hr18)."""
        return sum(self.branch_channels)


def _hrnet(width: int, depth: int, stage3_modules: int, stage4_modules: int) -> tuple:
    w = width
    return (
        StageConfig(1, "BOTTLENECK", (depth,), (64,)),
        StageConfig(1, "BASIC", (depth,) * 2, (w, 2 * w)),
        StageConfig(stage3_modules, "BASIC", (depth,) * 3, (w, 2 * w, 4 * w)),
        StageConfig(stage4_modules, "BASIC", (depth,) * 4, (w, 2 * w, 4 * w, 8 * w)),
    )


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("hr18s", _hrnet(18, 2, 3, 2), "ocrnet_hr18s_4xb2-160k_cityscapes-512x1024.py"),
        Variant("hr18", _hrnet(18, 4, 4, 3), "ocrnet_hr18_4xb2-160k_cityscapes-512x1024.py"),
        Variant("hr48", _hrnet(48, 4, 4, 3), "ocrnet_hr48_4xb2-160k_cityscapes-512x1024.py"),
    )
}


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise OcrnetError(
            f"unknown model variant {name!r}; valid: {', '.join(VARIANTS)}"
        ) from None
