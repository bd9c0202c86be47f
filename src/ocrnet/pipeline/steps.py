"""The steps of `ocrnet run`, each cached: inputs (demo data), export, build, eval, bench, and
the paired bootstrap intervals over the evaluations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocrnet.errors import OcrnetError
from ocrnet.pipeline.cache import StepCache, model_identity, slug
from ocrnet.pipeline.config import DEMO_CHECKPOINT, DEMO_DATA, DEMO_SCALE
from ocrnet.precision import Precision

if TYPE_CHECKING:
    from ocrnet.pipeline.config import RunConfig

#: (label, backend, precision, checkpoint or package) of each model the run compares.
Model = tuple[str, str, str, Path]


def resolve_inputs(cfg: RunConfig, out: Path, cache: StepCache
                   ) -> tuple[Path, Path, tuple[int, int], list[int]]:
    """(checkpoint, data root, scale, engine input shape): the user's, or the demo's (its scenes
    generated under `out` by a cached step)."""
    if cfg.is_demo:
        if not DEMO_CHECKPOINT.exists():
            raise OcrnetError(f"the demo model {DEMO_CHECKPOINT} is missing from this install; "
                              "reinstall ocrnet or pass --checkpoint")
        data_root = out / "data"
        params = dict(DEMO_DATA, train=cfg.calib_count)
        key = cache.key(step="data", **params)

        def generate() -> dict[str, Any]:
            from ocrnet.data.synthetic import write_dataset

            info = write_dataset(data_root, train=params["train"], val=params["val"],
                                 size=params["size"], seed=params["seed"],
                                 progress=cfg.progress)
            return {"counts": info.get("counts")}

        cache.run("data", key, generate,
                  valid=lambda _r: (data_root / "synthetic.json").exists())
        scale = cfg.scale or DEMO_SCALE
        return DEMO_CHECKPOINT, data_root, scale, [1, 3, scale[1], scale[0]]
    if cfg.data_root is None:
        raise OcrnetError("--checkpoint needs --data-root (a Cityscapes root with "
                          "leftImg8bit/ and gtFine/); run `ocrnet run` alone for the demo")
    checkpoint = Path(cfg.checkpoint)
    if not checkpoint.is_file():
        raise OcrnetError(f"checkpoint {checkpoint} does not exist")
    scale = cfg.scale or (2048, 1024)
    return checkpoint, Path(cfg.data_root), scale, [1, 3, scale[1], scale[0]]


def run_mode(cfg: RunConfig, shape: list[int]) -> tuple[dict[str, Any], list[int]]:
    """The run's test mode (as its JSON records it) and the engine input shape it needs:
    slide builds the packages at the crop (default: mmseg's 512x1024, within the image)."""
    from ocrnet import defaults
    from ocrnet.errors import OcrnetError
    from ocrnet.shapes import Size
    from ocrnet.work.modes import Mode

    mode = Mode.parse(cfg.mode, crop=cfg.crop, stride=cfg.stride)
    if mode.name == "aug":
        raise OcrnetError("ocrnet run builds static packages, which --mode aug cannot run; "
                          "use ocrnet eval --mode aug on a checkpoint or a --dynamic package")
    if mode.name == "whole":
        return mode.to_dict(), shape
    crop = mode.crop or Size(min(defaults.SLIDE_CROP[0], shape[2]),
                             min(defaults.SLIDE_CROP[1], shape[3]))
    stride = mode.stride or Size(max(1, crop.height * 2 // 3), max(1, crop.width * 2 // 3))
    return Mode.parse("slide", crop=crop, stride=stride).to_dict(), [1, 3, *crop]


def export_verified(cfg: RunConfig, cache: StepCache, checkpoint: Path, ckpt_sha: str,
                    out: Path, shape: list[int]) -> None:
    """The plain export, verified against PyTorch once; each build then exports its own graph
    (Winograd for float precisions, never under int8)."""
    onnx_path = out / "model.onnx"
    export = cache.run("export", cache.key(step="export", checkpoint=ckpt_sha, shape=shape),
                       lambda: _export(checkpoint, onnx_path, shape, cfg.trust_checkpoint),
                       valid=lambda _r: onnx_path.exists())
    cache.say(f"export verified against PyTorch: labels agree {export['label_agreement']:.4%}")


def build_all(cfg: RunConfig, cache: StepCache, precisions: Sequence[Precision],
              checkpoint: Path, ckpt_sha: str, out: Path, shape: list[int], calib_dir: Path,
              recipe: str) -> dict[str, Path]:
    """Each precision's build step (cached; `recipe` is part of the key): {precision: package}.
    `calib_dir` is the data root: its train split, never val."""
    packages: dict[str, Path] = {}
    for p in precisions:
        pkg = out / "packages" / f"{cfg.backend}-{p.value}"
        options = {"backend": cfg.backend, "precision": p.value, "shape": shape,
                   "calib": [cfg.calib_count, cfg.calib_method] if p.quantized else None}
        key = cache.key(step="build", checkpoint=ckpt_sha, recipe=recipe, **options)
        cache.run(f"build-{cfg.backend}-{p.value}", key,
                  lambda p=p, pkg=pkg: _build(checkpoint, pkg, cfg, p, shape, calib_dir),
                  valid=lambda _r, pkg=pkg: (pkg / "ocrnet.json").exists())
        packages[p.value] = pkg
    return packages


def evaluate_all(models: list[Model], cache: StepCache,
                  common: dict[str, Any], data_root: Path, scale: tuple[int, int],
                  cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Each model's eval step (cached); its per-image matrices land beside it as .npz."""
    evals: dict[str, dict[str, Any]] = {}
    for label, _backend, _precision, path in models:
        key = cache.key(step="eval", model=model_identity(path), **common)
        stack = cache.dir / f"eval-{slug(label)}.npz"
        evals[label] = cache.run(
            f"eval-{slug(label)}", key,
            lambda path=path, stack=stack: _eval(path, data_root, scale, cfg, stack,
                                                 common.get("mode")),
            valid=lambda _r, stack=stack: stack.exists())
    return evals


def intervals(models: list[Model], steps: Path, resamples: int
               ) -> dict[str, dict[str, Any]]:
    """Paired bootstrap ΔmIoU intervals of every model vs the first (PyTorch eager fp32)."""
    import numpy as np

    from ocrnet.stats import paired_bootstrap

    def load(label: str) -> tuple[np.ndarray, list[str]]:
        with np.load(steps / f"eval-{slug(label)}.npz") as z:
            return z["per_image"], [str(i) for i in z["image_ids"]]

    ref, ref_ids = load(models[0][0])
    out = {}
    for label, *_ in models[1:]:
        stack, ids = load(label)
        if ids != ref_ids:  # same split, limit and data: a mismatch is a stale step
            raise OcrnetError(f"the evaluations of {models[0][0]} and {label} scored different "
                              f"images; delete {steps} and run again")
        out[label] = paired_bootstrap(stack, ref, resamples=resamples).to_json()
    return out


def bench_all(models: list[Model], cache: StepCache, shape: list[int], cfg: RunConfig
              ) -> dict[str, Any]:
    """The bench step (cached): every model, interleaved."""
    key = cache.key(step="bench", models=[model_identity(m[3]) for m in models],
                    shape=shape, duration=cfg.bench_duration, batches=list(cfg.bench_batches))
    return cache.run("bench", key, lambda: _bench([m[3] for m in models], shape, cfg))


def _export(checkpoint: Path, onnx_path: Path, shape: list[int],
            trust_checkpoint: bool) -> dict[str, Any]:
    from ocrnet.export import export_onnx

    result = export_onnx(str(checkpoint), onnx_path, shape=shape, verify=True,
                         trust_checkpoint=trust_checkpoint)
    return {"path": str(onnx_path), "label_agreement": result.verify["label_agreement"],
            "checks": result.verify["checks"]}


def _build(source: Path, pkg: Path, cfg: RunConfig, p: Precision, shape: list[int],
           calib_dir: Path) -> dict[str, Any]:
    from ocrnet.build import build_package

    package = build_package(
        source, pkg, backend=cfg.backend, precision=p, shape=shape, overwrite=True,
        calib_dir=calib_dir if p.quantized else None, calib_count=cfg.calib_count,
        calib_method=cfg.calib_method, trust_checkpoint=cfg.trust_checkpoint)
    return {"package": str(pkg), "runtime": package.meta.get("runtime")}


def _eval(path: Path, data_root: Path, scale: tuple[int, int], cfg: RunConfig,
          stack: Path, mode: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score one model; its per-image confusion matrices go to `stack` (.npz) for the
    paired bootstrap (2.9 kB an image; the step's JSON keeps the summary)."""
    import io

    import numpy as np

    from ocrnet.evaluate import evaluate
    from ocrnet.fileio import atomic_write_bytes

    result = evaluate(str(path), data_root, split="val", limit=cfg.limit, scale=scale,
                      progress=cfg.progress, trust_checkpoint=cfg.trust_checkpoint,
                      **(mode or {}))
    buf = io.BytesIO()
    np.savez(buf, per_image=result.per_image, image_ids=np.asarray(result.image_ids))
    atomic_write_bytes(stack, buf.getvalue())
    return result.to_json()


def _bench(paths: list[Path], shape: list[int], cfg: RunConfig) -> dict[str, Any]:
    from ocrnet.bench import benchmark

    report = benchmark([str(p) for p in paths], batch=list(cfg.bench_batches),
                       shape=shape[2:], duration=cfg.bench_duration,
                       progress=print if cfg.progress else None,
                       trust_checkpoint=cfg.trust_checkpoint)
    return report.to_json()
