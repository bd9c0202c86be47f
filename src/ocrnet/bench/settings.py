"""`BenchSettings`: every knob of one benchmark run, validated once, with its default.

This is the one home of the benchmark's defaults: `benchmark()` reads them from here and the CLI
shows them in its help, so the module imports nothing heavy (no numpy, torch, OpenCV or engines)
and `ocrnet --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ocrnet import defaults
from ocrnet.errors import ArgumentError, check_int
from ocrnet.shapes import InputShape, Size, parse_input_shape

#: The input size when none is given: one Cityscapes frame, as `build`/`export` default to.
SHAPE = Size(*defaults.INPUT_SHAPE[2:])
#: Warm-up seconds after the first inference when neither `warmup` nor `warmup_s` is given.
WARMUP_S = 1.0
#: Seconds of timed calls per model x batch when neither `iterations` nor `duration` is given.
DURATION_S = 10.0


def _count(name: str, value: Any, minimum: int, *, optional: bool = False) -> None:
    """`value` is an int >= `minimum` (None allowed when `optional`)."""
    if not (value is None and optional):
        check_int(value, name, minimum=minimum)


def _seconds(name: str, value: Any, *, zero_ok: bool, optional: bool = True) -> None:
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        (value >= 0 if zero_ok else value > 0)
    if not ok:
        what = "zero or more seconds" if zero_ok else "positive seconds"
        raise ArgumentError(f"{name} must be {what}, got {value!r}")


@dataclass(frozen=True)
class BenchSettings:
    """How to measure: sizes, how long, on what. Field names are the CLI's option names.

    `shape` is a network input, NxCxHxW, or HxW for 1x3xHxW (`ocrnet.shapes`, as `build` and
    `export` take it); it is kept as its HxW `Size`. `batch` lists the batch sizes measured; left
    out (None), it is the shape's N. Given both, N must be 1 (what HxW implies) or the one
    batch size listed, else `ArgumentError` says to give the batch sizes in one place.
    `warmup` (calls) or `warmup_s` (seconds, default `WARMUP_S`) run after the first inference;
    `iterations` (timed calls per model x batch, per stream with `streams`) or `duration`
    (seconds of timed calls, default `DURATION_S`, at least `min_iterations` calls) decide when
    a measurement is done. `threads` is passed to engines opened from paths; `round_s` is the
    length of one model's block in the round-robin. `end_to_end` is a folder of images to run
    through the whole files -> label PNGs path as well. `seed` (default: from the clock,
    recorded in the report) makes the synthetic inputs. `trust_checkpoint`/`trust_package` are
    `open_model`'s, for models opened from paths. Invalid values raise `ArgumentError` when
    the object is made.
    """

    batch: tuple[int, ...] | None = None
    shape: Size = SHAPE
    warmup: int | None = None
    warmup_s: float | None = None
    iterations: int | None = None
    duration: float | None = None
    min_iterations: int = 5
    threads: int | None = None
    streams: int = 1
    device: str = defaults.DEVICE
    round_s: float = 0.5
    seed: int | None = None
    end_to_end: str | None = None
    trust_checkpoint: bool = False
    trust_package: bool = False

    def __post_init__(self) -> None:
        # Normalise what the API accepts loosely (an int or a list for batch, "NxCxHxW" or "HxW"
        # for shape, a Path for end_to_end) so equal settings compare and serialise equal.
        shape = parse_input_shape(self.shape)
        object.__setattr__(self, "batch", _batches(self.batch, shape))
        object.__setattr__(self, "shape", shape.size)
        if self.end_to_end is not None:
            object.__setattr__(self, "end_to_end", os.fspath(self.end_to_end))
        self._validate()

    def _validate(self) -> None:
        if not self.batch:
            raise ArgumentError("batch must list at least one batch size")
        for b in self.batch:
            _count("batch", b, 1)
        if self.warmup is not None and self.warmup_s is not None:
            raise ArgumentError("give --warmup (calls) or --warmup-s (seconds), not both")
        if self.iterations is not None and self.duration is not None:
            raise ArgumentError("give --iterations or --duration, not both")
        _count("warmup", self.warmup, 0, optional=True)
        _seconds("warmup_s", self.warmup_s, zero_ok=True)
        _count("iterations", self.iterations, 1, optional=True)
        _seconds("duration", self.duration, zero_ok=False)
        _count("min_iterations", self.min_iterations, 1)
        _count("threads", self.threads, 1, optional=True)
        _count("streams", self.streams, 1)
        _seconds("round_s", self.round_s, zero_ok=True, optional=False)
        _count("seed", self.seed, 0, optional=True)
        if not isinstance(self.device, str) or not self.device:
            raise ArgumentError(f"device must be a name such as 'cpu', got {self.device!r}")

    # --- derived values -----------------------------------------------------------------------
    @property
    def warmup_seconds(self) -> float:
        """Seconds of warm-up (0 when `warmup` counts calls instead)."""
        if self.warmup is None and self.warmup_s is None:
            return WARMUP_S
        return self.warmup_s or 0.0

    @property
    def duration_s(self) -> float | None:
        """Seconds of timed calls, or None when `iterations` counts calls instead."""
        return None if self.iterations is not None else (self.duration or DURATION_S)

    def with_seed(self) -> BenchSettings:
        """These settings with a seed fixed now (from the clock) if none was given."""
        if self.seed is not None:
            return self
        import time

        return dataclasses.replace(self, seed=time.time_ns() % 2**32)

    # --- serialisation ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Every field, JSON-ready; `from_json` gives equal settings back (see `isolate`)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArgumentError(f"unknown benchmark settings: {', '.join(unknown)}")
        return cls(**data)

    def report_json(self) -> dict[str, Any]:
        """The `settings` block of a report (its keys are part of the JSON schema)."""
        return {
            "shape": list(self.shape), "batches": list(self.batch), "warmup": self.warmup,
            "warmup_s": self.warmup_seconds, "iterations": self.iterations,
            "duration_s": self.duration_s, "min_iterations": self.min_iterations,
            "threads": self.threads, "streams": self.streams, "device": self.device,
            "round_s": self.round_s, "seed": self.seed, "end_to_end": self.end_to_end or "",
        }


def _batches(batch: Any, shape: InputShape) -> tuple[int, ...]:
    """The batch sizes to measure: `batch` as a tuple, or the shape's N when none is given."""
    if batch is None:
        return (shape.batch,)
    batches = (batch,) if isinstance(batch, int) else tuple(batch)
    if shape.batch != 1 and batches != (shape.batch,):
        listed = " ".join(map(str, batches))
        raise ArgumentError(
            f"--shape {shape} says batch {shape.batch} but --batch says {listed}: give the batch "
            f"sizes in one place (--shape {shape.size} --batch {listed}, or --shape {shape} "
            "alone)")
    return batches


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
