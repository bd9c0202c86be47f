"""mmseg-identical OCRNet: `build_model`, `load_checkpoint` and friends."""

from __future__ import annotations

from ocrnet.model.checkpoint import (
    describe_checkpoint,
    detect_variant,
    extract_state_dict,
    load_checkpoint,
    num_classes_of,
    read_checkpoint,
    save_checkpoint,
)
from ocrnet.model.segmentor import OCRNet
from ocrnet.model.variants import VARIANTS, Variant, get_variant

__all__ = [
    "VARIANTS",
    "OCRNet",
    "Variant",
    "build_model",
    "describe_checkpoint",
    "detect_variant",
    "extract_state_dict",
    "get_variant",
    "load_checkpoint",
    "model_from_checkpoint",
    "num_classes_of",
    "read_checkpoint",
    "save_checkpoint",
]


def build_model(variant: str = "hr18", *, num_classes: int = 19) -> OCRNet:
    """An OCRNet whose state_dict keys and shapes are exactly mmseg's for that config."""
    return OCRNet(get_variant(variant), num_classes=num_classes)


def model_from_checkpoint(path, *, trust_checkpoint: bool = False) -> OCRNet:
    """Build the variant the checkpoint's shapes describe and load it (eval mode)."""
    ckpt = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    state = extract_state_dict(ckpt)
    variant = detect_variant(state, source=f"checkpoint {path}")
    model = build_model(variant, num_classes=num_classes_of(state))
    from ocrnet.model.checkpoint import load_state_dict_strict

    load_state_dict_strict(model, state, source=f"checkpoint {path}")
    return model.eval()
