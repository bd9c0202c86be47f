"""Precision is one enum; the vendor's names are accepted as aliases.

`int8-bf16` / `int8-fp16` are int8 with a half-precision remainder: the quantized operations run
in int8 and everything the quantizer leaves in float (OCR attention, softmax, resize, ...) runs
in bf16 / fp16. That is the faithful form of the vendor's `qint8_mixed_float16`, hence its alias.
"""

from __future__ import annotations

import enum

from ocrnet.errors import OcrnetError


class Precision(str, enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    INT8_BF16 = "int8-bf16"
    INT8_FP16 = "int8-fp16"

    @classmethod
    def parse(cls, name: str | Precision) -> Precision:
        """`fp16`, `FP16` or the vendor alias `force_float16` -> Precision.FP16."""
        if isinstance(name, Precision):
            return name
        key = str(name).strip().lower().replace("_", "-")
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            import difflib

            valid = [p.value for p in cls] + sorted(a.replace("-", "_") for a in _ALIASES)
            hint = difflib.get_close_matches(key, valid, n=1)
            maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise OcrnetError(f"unknown precision {name!r}{maybe}; valid: {', '.join(valid)}"
                              ) from None

    @property
    def quantized(self) -> bool:
        """True for the int8 forms (they need calibration images)."""
        return self in (Precision.INT8, Precision.INT8_BF16, Precision.INT8_FP16)

    @property
    def remainder(self) -> Precision:
        """The float type the non-quantized part runs in: fp32 for `int8`, bf16 for
        `int8-bf16`, the precision itself for the float precisions."""
        return {Precision.INT8: Precision.FP32, Precision.INT8_BF16: Precision.BF16,
                Precision.INT8_FP16: Precision.FP16}.get(self, self)


# Keys are written with "-": parse() folds "_" into "-" first, so `qint8_mixed_float16` and
# `int8_bf16` both resolve.
_ALIASES = {
    "force-float32": "fp32",
    "force-float16": "fp16",
    # The vendor's int8 with a float16 remainder. It mapped to plain int8 (fp32 remainder)
    # before int8-fp16 existed; now it means what it says.
    "qint8-mixed-float16": "int8-fp16",
    "float32": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
    "int8-fp32": "int8",
}
