"""Tiny shared artifacts for the engine tests, made once per test run.

A random-weight hr18 with random BN statistics (weights that leave BN at identity hide bugs),
its ONNX export at 1x3x64x128 (the dynamo export is the slow step, ~25 s here, so every test
file reuses this one), and a 64x128 synthetic Cityscapes-layout set for calibration.

`shared` makes each builder run once per test run, not once per process: `make test` runs the
suite on pytest-xdist workers that share one artifact folder (conftest.py), and the first worker
to ask builds under a file lock while the others wait for it and read its result.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "golden"
# In CI a missing extra fails the tests that need it instead of skipping them (conftest.py).
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
SHAPE = (1, 3, 64, 128)
DEMO = Path(__file__).parents[1] / "src" / "ocrnet" / "assets"


_WORKDIR: list[Path] = []  # set once per session by conftest's `engine_artifacts` fixture


def use_workdir(path: Path) -> None:
    """Where the session's shared artifacts go (a pytest tmp_path_factory folder)."""
    _WORKDIR[:] = [path]


def workdir() -> Path:
    if not _WORKDIR:
        raise RuntimeError("_engine_helpers.workdir() is set by tests/conftest.py's session "
                           "fixture; run the tests through pytest")
    return _WORKDIR[0]


Builder = TypeVar("Builder", bound=Callable[..., Any])


def shared(build: Builder) -> Builder:
    """`functools.cache` across the test run's processes: the first call with given arguments
    (in any xdist worker) runs `build` under a file lock in `workdir()` and pickles its result;
    every later call, in this process or another, returns that result."""
    from filelock import FileLock  # torch's own dependency

    @functools.cache
    def once(*args: Any, **kwargs: Any) -> Any:
        key = repr((build.__module__, build.__qualname__, args, sorted(kwargs.items())))
        name = f"{build.__name__.strip('_')}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        folder = workdir() / ".shared"
        folder.mkdir(exist_ok=True)
        done = folder / f"{name}.pickle"
        with FileLock(str(folder / f"{name}.lock")):
            if done.exists():
                return pickle.loads(done.read_bytes())
            result = build(*args, **kwargs)
            temp = done.with_suffix(".partial")
            temp.write_bytes(pickle.dumps(result))
            temp.replace(done)
            return result

    return functools.wraps(build)(once)  # type: ignore[return-value]


@shared
def checkpoint(variant: str = "hr18", seed: int = 0) -> Path:
    from ocrnet.model import build_model, save_checkpoint

    sys.path.insert(0, str(GOLDEN))
    from randomize import randomized_state_dict

    model = build_model(variant).eval()
    model.load_state_dict(randomized_state_dict(model.state_dict(), seed))
    path = workdir() / f"{variant}-{seed}.pth"
    save_checkpoint(path, model)
    return path


@shared
def onnx_file() -> Path:
    from ocrnet.export import export_onnx
    from ocrnet.package import OUTPUT_NAMES

    path = workdir() / "hr18.onnx"
    cached_export(checkpoint(), path, SHAPE, outputs=OUTPUT_NAMES,
                  export=lambda: export_onnx(checkpoint(), path, shape=SHAPE))
    return path


def cached_export(source: Path, out: Path, shape: tuple[int, ...], *, export: Any,
                  **options: Any) -> Path:
    """`export()` through `ocrnet.export_cache` under the key a checkpoint build of `source`
    with `options` uses (conftest points OCRNET_EXPORT_CACHE into the run's shared folder), so
    builds from the checkpoint later in the run reuse this export instead of exporting again."""
    from ocrnet import export_cache
    from ocrnet.export import DEFAULT_OPSET
    from ocrnet.fileio import sha256_file

    options.setdefault("opset", DEFAULT_OPSET)
    export_cache.exported(out, export_cache.export_key(sha256_file(source), shape, **options),
                          export)
    return out


@shared
def lowres_onnx() -> Path:
    """`onnx_file()` ending before its final resize, with the one output `lowres`: the graph
    `export_onnx(outputs=["lowres"])` writes (the model's `forward_heads`), cut from the shared
    export in a second instead of a second export (minutes on a loaded machine)."""
    from ocrnet.export import select_outputs

    return select_outputs(onnx_file(), workdir() / "hr18-lowres.onnx", ["lowres"])


@shared
def lowres_package(backend: str = "openvino") -> Path:
    """An fp32 package of `lowres_onnx()`: labels computed on the host (resize_argmax)."""
    from ocrnet.build import build_package

    return build_package(lowres_onnx(), workdir() / f"{backend}-fp32-lowres",
                         backend=backend).path


@shared
def calib_root() -> Path:
    from ocrnet.data.synthetic import write_dataset

    root = workdir() / "synth"
    write_dataset(root, train=3, val=1, size=SHAPE[2:], workers=0, progress=False)
    return root


def batch(seed: int = 0, n: int = 1) -> np.ndarray:
    """A normalized image-like batch: a synthetic scene through the eval preprocessing."""
    from ocrnet.data.synthetic import generate_scene
    from ocrnet.data.transforms import normalize

    images = []
    for i in range(n):
        scene = generate_scene(seed + i, *SHAPE[2:])
        rgb = scene[0] if isinstance(scene, tuple) else scene
        images.append(normalize(np.ascontiguousarray(rgb[:, :, ::-1])))
    return np.stack(images)


@shared
def _reference(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    from ocrnet.engines import open_model

    with open_model(checkpoint()) as engine:
        result = engine.infer(batch(seed, n), return_logits=True)
    return result.labels, result.logits


def reference(seed: int = 0, n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch fp32 eager labels and logits for `batch(seed, n)`."""
    return _reference(seed, n)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


def demo_checkpoint() -> Path | None:
    """The lead's trained demo model, if bundled (int8 accuracy is only meaningful on it)."""
    found = sorted(DEMO.glob("*.pth")) if DEMO.is_dir() else []
    return found[0] if found else None


def package(backend: str, precision: str, **options: object) -> Path:
    """A package built from `onnx_file()` (int8: calibrated on `calib_root()`), made once per
    session for each distinct build: options left at their default name the same package
    (`calib_method="minmax"` is ONNX Runtime's default, so it is calibrated once, not twice)."""
    from ocrnet.engines import get_backend
    from ocrnet.precision import Precision

    precision = Precision.parse(precision).value
    methods = get_backend(backend).calib_methods
    if options.get("calib_method") in (None, *methods[:1]) and precision.startswith("int8"):
        options.pop("calib_method", None)
    return _package(backend, precision, tuple(sorted(options.items())))


@shared
def _package(backend: str, precision: str, options: tuple[tuple[str, object], ...]) -> Path:
    from ocrnet.build import build_package

    name = "-".join([backend, precision, *(f"{k}={v}" for k, v in options)])
    calib = {"calib_dir": calib_root(), "calib_count": 3} if precision.startswith("int8") \
        else {}
    return build_package(onnx_file(), workdir() / name, backend=backend, precision=precision,
                         **calib, **dict(options)).path


@functools.cache
def runs_here(backend: str, precision: str) -> bool:
    """Whether this machine runs `backend` at `precision` natively (the project's own check,
    `runnable_precisions`: OpenVINO bf16 needs a CPU with native bf16, AVX-512 BF16 or AMX)."""
    from ocrnet.engines import get_backend
    from ocrnet.errors import OcrnetError
    from ocrnet.precision import Precision

    cls = get_backend(backend)
    try:
        cls.require()
    except OcrnetError:
        return False
    return Precision.parse(precision) in cls.runnable_precisions()


def needs(backend: str, precision: str) -> pytest.MarkDecorator:
    """Skip (never fail) where this CPU cannot run `backend` at `precision` natively."""
    from ocrnet.engines import get_backend
    from ocrnet.errors import OcrnetError

    try:
        get_backend(backend).require()
    except OcrnetError:
        if IN_CI:  # not installed: the test runs and fails, as a missing extra should in CI
            return pytest.mark.skipif(False, reason="")
    return pytest.mark.skipif(not runs_here(backend, precision),
                              reason=f"{backend} {precision} needs native support this CPU "
                                     "lacks (runnable_precisions)")


@shared
def demo_onnx(shape: tuple[int, int, int, int], outputs: tuple[str, ...]) -> Path:
    """The shipped demo model exported once per session at `shape` (no Winograd: the graph a
    checkpoint build exports for int8), for every test that builds from it: one export with
    both outputs, under the key `demo_package`'s build of that shape uses, cut to `outputs`."""
    from ocrnet.export import export_onnx, select_outputs
    from ocrnet.package import OUTPUT_NAMES

    full = workdir() / f"demo-{'x'.join(map(str, shape))}.onnx"
    source = DEMO / "ocrnet_hr18_synthetic_demo.pth"
    cached_export(source, full, shape, outputs=OUTPUT_NAMES,
                  export=lambda: export_onnx(source, full, shape=shape, winograd=False))
    if list(outputs) == list(OUTPUT_NAMES):
        return full
    return select_outputs(full, full.with_name(f"{full.stem}-{'+'.join(outputs)}.onnx"), outputs)


def demo_package(backend: str = "openvino", precision: str = "fp32",
                 shape: tuple[int, int, int, int] = (1, 3, 128, 256)) -> Path:
    """A package of the shipped demo model at a small static shape (plain graph), built once
    per run for each (backend, precision, shape), however the arguments are spelled (the serve
    tests' 4x3x64x128 OpenVINO fp32 package is also test_predict's static-batch package)."""
    return _demo_package(backend, precision, tuple(int(d) for d in shape))


@shared
def _demo_package(backend: str, precision: str, shape: tuple[int, ...]) -> Path:
    from ocrnet.build import build_package

    checkpoint = DEMO / "ocrnet_hr18_synthetic_demo.pth"
    name = f"demo-{backend}-{precision}-{'x'.join(map(str, shape))}"
    # No Winograd: the plain graph's export is demo_onnx's, made once for both.
    return build_package(checkpoint, workdir() / name, backend=backend, precision=precision,
                         shape=shape, winograd=False).path
