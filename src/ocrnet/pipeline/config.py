"""What `ocrnet run` is told (`RunConfig`) and its fixed choices: the demo inputs, the build
recipe, the precisions compared by default."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrnet.precision import Precision

ASSETS = Path(__file__).parent.parent / "assets"
DEMO_CHECKPOINT = ASSETS / "ocrnet_hr18_synthetic_demo.pth"
#: The demo scenes: the validation split the demo model was scored on (see the model card).
DEMO_DATA = {"size": (256, 512), "val": 100, "seed": 0}
DEMO_SCALE = (512, 256)
#: Part of every build step's cache key: a package made by an older recipe is rebuilt, not reused.
BUILD_RECIPE = "each precision exported from the checkpoint; Winograd for fp32/bf16 (2026-11)"
#: What `ocrnet run` compares unless told otherwise, kept to those this machine runs natively.
DEFAULT_PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: int8 with a half-precision remainder, fastest first: `run` adds the first one this machine
#: runs natively (bf16 first: AMX and AVX-512 BF16 have bf16 matmul units, fp16 is AVX-512 FP16
#: vector arithmetic on most CPUs that have it).
HALF_REMAINDER_INT8 = ("int8-bf16", "int8-fp16")


@dataclass
class RunConfig:
    checkpoint: str | None = None  # None: the shipped demo model
    data_root: str | None = None  # None: generated demo scenes under <out>/data
    out: str = "runs/demo"
    backend: str = "openvino"
    precisions: Sequence[str] | None = None  # None: DEFAULT_PRECISIONS this machine runs
    limit: int | None = None
    scale: tuple[int, int] | None = None  # keep-ratio limit (W, H); None: demo 512x256 / 2048x1024
    calib_count: int = 32
    calib_method: str | None = None
    bench_duration: float = 5.0
    bench_batches: Sequence[int] = (1,)
    samples: int = 3  # overlays in the report
    progress: bool = True
    max_drop: float | None = None  # fail the run if a ΔmIoU interval reaches below -max_drop
    resamples: int = 2000  # paired bootstrap resamples for the ΔmIoU intervals
    extra: dict[str, Any] = field(default_factory=dict)
    # Allow unpickling the user's checkpoint (export, builds, eval and bench of it). Not part of
    # any step's cache key: it changes whether a file may be opened, not what a step computes.
    trust_checkpoint: bool = False
    # mmseg's test mode for the eval steps (ocrnet.work.modes); slide builds the packages at
    # the crop, so they run tiles. Part of the eval steps' keys when not "whole".
    mode: str = "whole"
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None

    @property
    def is_demo(self) -> bool:
        return self.checkpoint is None


def default_precisions(runnable: Sequence[Precision]) -> list[Precision]:
    """DEFAULT_PRECISIONS this machine runs natively, plus its fastest native int8 form."""
    chosen = [p for p in map(Precision.parse, DEFAULT_PRECISIONS) if p in runnable]
    half = next((p for p in map(Precision.parse, HALF_REMAINDER_INT8) if p in runnable), None)
    return chosen + ([half] if half else [])
