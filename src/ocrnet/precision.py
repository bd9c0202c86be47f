"""Precision is one enum; the vendor's names are accepted as aliases."""

from __future__ import annotations

import enum

from ocrnet.errors import OcrnetError


class Precision(str, enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"

    @classmethod
    def parse(cls, name: str | Precision) -> Precision:
        """`fp16`, `FP16` or the vendor alias `force_float16` -> Precision.FP16."""
        if isinstance(name, Precision):
            return name
        key = str(name).strip().lower()
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            valid = ", ".join([p.value for p in cls] + sorted(_ALIASES))
            raise OcrnetError(f"unknown precision {name!r}; valid: {valid}") from None


_ALIASES = {
    "force_float32": "fp32",
    "force_float16": "fp16",
    "qint8_mixed_float16": "int8",
    "float32": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
}
