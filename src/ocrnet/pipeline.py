"""`ocrnet run`: the one-click job. export -> build each precision -> eval -> bench -> report.

With a checkpoint and a Cityscapes root it does the real thing; with neither it runs the offline
demo (the shipped demo model on generated validation scenes). Every step is cached by a content
hash of what it depends on (input file digests, options, upstream results, ocrnet's version), in
`<out>/steps/<step>.json`, so rerunning skips finished work and a killed run resumes; packages
are written atomically by `ocrnet build`, so a half-built one is never picked up.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ocrnet import __version__
from ocrnet.data.cityscapes import CLASSES
from ocrnet.errors import OcrnetError
from ocrnet.precision import Precision

ASSETS = Path(__file__).parent / "assets"
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

Say = Callable[[str], None]


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

    @property
    def is_demo(self) -> bool:
        return self.checkpoint is None


# --- cached steps -----------------------------------------------------------------------------
class StepCache:
    """`<out>/steps/<name>.json` = {"key": sha256 of the step's inputs, "result": ...}."""

    def __init__(self, out: Path, say: Say) -> None:
        from ocrnet.fileio import prepare_folder

        self.dir = prepare_folder(out / "steps")
        self.say = say

    @staticmethod
    def key(**inputs: Any) -> str:
        blob = json.dumps({"ocrnet": __version__, **inputs}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def run(self, name: str, key: str, work: Callable[[], Any],
            valid: Callable[[Any], bool] = lambda _r: True) -> Any:
        from ocrnet.fileio import atomic_write_text

        path = self.dir / f"{name}.json"
        hit, cached = self._read(path, key, valid)
        if hit:
            self.say(f"[cached] {name}")
            return cached
        self.say(f"[run] {name}")
        started = time.perf_counter()
        result = work()
        atomic_write_text(path, json.dumps(
            {"key": key, "seconds": round(time.perf_counter() - started, 1), "result": result},
            indent=1, default=str))
        return result

    @staticmethod
    def _read(path: Path, key: str, valid: Callable[[Any], bool]) -> tuple[bool, Any]:
        """(True, result) for a usable entry; a missing, unreadable, corrupt or stale entry is
        a miss (the step runs again and rewrites it), never an error that blocks resuming."""
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(cached, dict) and cached.get("key") == key and "result" in cached \
                    and valid(cached["result"]):
                return True, cached["result"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError,
                IndexError, RecursionError):
            pass
        return False, None


def _digest(path: Path) -> str:
    from ocrnet.package import sha256_file

    return sha256_file(path)


# --- the run ----------------------------------------------------------------------------------
def run(cfg: RunConfig, say: Say = print) -> dict[str, Any]:
    """Run every step (cached), write report.md/report.json/plots, return the report dict."""
    from ocrnet.engines import get_backend

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = get_backend(cfg.backend)
    backend.require()
    if cfg.precisions is None:
        precisions = default_precisions(backend.runnable_precisions("cpu"))
    else:
        precisions = [backend.check_precision(p) for p in cfg.precisions]
    cache = StepCache(out, say)

    checkpoint, data_root, scale, shape = _inputs(cfg, out, cache)
    ckpt_sha = _digest(checkpoint)
    calib_dir = data_root  # its train split; never val
    common = {"checkpoint": ckpt_sha, "data": str(data_root), "scale": scale,
              "limit": cfg.limit}

    # The plain export is verified against PyTorch once; each build then exports its own graph
    # (Winograd for float precisions, never under int8).
    if backend.source == "onnx":
        onnx_path = out / "model.onnx"
        export = cache.run("export", cache.key(step="export", checkpoint=ckpt_sha, shape=shape),
                           lambda: _export(checkpoint, onnx_path, shape),
                           valid=lambda _r: onnx_path.exists())
        say(f"export verified against PyTorch: labels agree {export['label_agreement']:.4%}")

    packages: dict[str, Path] = {}
    for p in precisions:
        pkg = out / "packages" / f"{cfg.backend}-{p.value}"
        options = {"backend": cfg.backend, "precision": p.value, "shape": shape,
                   "calib": [cfg.calib_count, cfg.calib_method] if p.quantized else None}
        key = cache.key(step="build", checkpoint=ckpt_sha, recipe=BUILD_RECIPE, **options)
        cache.run(f"build-{cfg.backend}-{p.value}", key,
                  lambda p=p, pkg=pkg: _build(checkpoint, pkg, cfg, p, shape, calib_dir),
                  valid=lambda _r, pkg=pkg: (pkg / "ocrnet.json").exists())
        packages[p.value] = pkg

    models: list[tuple[str, str, str, Path]] = [("PyTorch eager", "torch", "fp32", checkpoint)]
    models += [(f"{cfg.backend} {p}", cfg.backend, p, pkg) for p, pkg in packages.items()]

    evals = _evaluate_all(models, cache, common, data_root, scale, cfg)
    intervals = _intervals(models, cache.dir, cfg.resamples)

    bench_key = cache.key(step="bench", models=[_model_identity(m[3]) for m in models],
                          shape=shape, duration=cfg.bench_duration,
                          batches=list(cfg.bench_batches))
    bench = cache.run("bench", bench_key, lambda: _bench([m[3] for m in models], shape, cfg))

    report = _report(cfg, models, evals, bench, checkpoint, data_root, scale, shape,
                     intervals=intervals)
    _write_report(out, report, cfg, packages, data_root, scale)
    say(_table(report))
    say(f"report: {out / 'report.md'}  (JSON: {out / 'report.json'})")
    if cfg.max_drop is not None:
        check_max_drop(report, cfg.max_drop)
    return report


def _evaluate_all(models: list[tuple[str, str, str, Path]], cache: StepCache,
                  common: dict[str, Any], data_root: Path, scale: tuple[int, int],
                  cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Each model's eval step (cached); its per-image matrices land beside it as .npz."""
    evals: dict[str, dict[str, Any]] = {}
    for label, _backend, _precision, path in models:
        key = cache.key(step="eval", model=_model_identity(path), **common)
        stack = cache.dir / f"eval-{_slug(label)}.npz"
        evals[label] = cache.run(
            f"eval-{_slug(label)}", key,
            lambda path=path, stack=stack: _eval(path, data_root, scale, cfg, stack),
            valid=lambda _r, stack=stack: stack.exists())
    return evals


def default_precisions(runnable: Sequence[Precision]) -> list[Precision]:
    """DEFAULT_PRECISIONS this machine runs natively, plus its fastest native int8 form."""
    chosen = [p for p in map(Precision.parse, DEFAULT_PRECISIONS) if p in runnable]
    half = next((p for p in map(Precision.parse, HALF_REMAINDER_INT8) if p in runnable), None)
    return chosen + ([half] if half else [])


class AccuracyGateError(OcrnetError):
    """`run --max-drop X`: some precision's ΔmIoU interval reaches below -X."""


def check_max_drop(report: dict[str, Any], max_drop: float) -> None:
    """Raise `AccuracyGateError` naming each precision whose 95% interval's lower bound of
    ΔmIoU (vs PyTorch eager fp32) is below -max_drop mIoU points."""
    failed = [r for r in report["results"] if r.get("delta_ci")
              and r["delta_ci"][0] < -max_drop]
    if failed:
        names = ", ".join(f"{r['precision']} ({r['backend']}: ΔmIoU {r['delta_mIoU']:+.3f}, "
                          f"95% CI [{r['delta_ci'][0]:+.3f}, {r['delta_ci'][1]:+.3f}])"
                          for r in failed)
        raise AccuracyGateError(f"--max-drop {max_drop}: the ΔmIoU interval of {names} reaches "
                                f"below -{max_drop} mIoU points (report written)")


def _intervals(models: list[tuple[str, str, str, Path]], steps: Path, resamples: int
               ) -> dict[str, dict[str, Any]]:
    """Paired bootstrap ΔmIoU intervals of every model vs the first (PyTorch eager fp32)."""
    import numpy as np

    from ocrnet.stats import paired_bootstrap

    def load(label: str) -> tuple[np.ndarray, list[str]]:
        with np.load(steps / f"eval-{_slug(label)}.npz") as z:
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


def _inputs(cfg: RunConfig, out: Path, cache: StepCache
            ) -> tuple[Path, Path, tuple[int, int], list[int]]:
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


def _model_identity(path: Path) -> str:
    """What a model's results depend on: the checkpoint's or the package manifest's digest."""
    manifest = path / "ocrnet.json"
    return _digest(manifest if manifest.exists() else path)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _export(checkpoint: Path, onnx_path: Path, shape: list[int]) -> dict[str, Any]:
    from ocrnet.export import export_onnx

    result = export_onnx(str(checkpoint), onnx_path, shape=shape, verify=True)
    return {"path": str(onnx_path), "label_agreement": result.verify["label_agreement"],
            "checks": result.verify["checks"]}


def _build(source: Path, pkg: Path, cfg: RunConfig, p: Precision, shape: list[int],
           calib_dir: Path) -> dict[str, Any]:
    from ocrnet.build import build_package

    package = build_package(
        source, pkg, backend=cfg.backend, precision=p, shape=shape, overwrite=True,
        calib_dir=calib_dir if p.quantized else None, calib_count=cfg.calib_count,
        calib_method=cfg.calib_method)
    return {"package": str(pkg), "runtime": package.meta.get("runtime")}


def _eval(path: Path, data_root: Path, scale: tuple[int, int], cfg: RunConfig,
          stack: Path) -> dict[str, Any]:
    """Score one model; its per-image confusion matrices go to `stack` (.npz) for the
    paired bootstrap (2.9 kB an image; the step's JSON keeps the summary)."""
    import io

    import numpy as np

    from ocrnet.evaluate import evaluate
    from ocrnet.fileio import atomic_write_bytes

    result = evaluate(str(path), data_root, split="val", limit=cfg.limit, scale=scale,
                      progress=cfg.progress)
    buf = io.BytesIO()
    np.savez(buf, per_image=result.per_image, image_ids=np.asarray(result.image_ids))
    atomic_write_bytes(stack, buf.getvalue())
    return result.to_json()


def _bench(paths: list[Path], shape: list[int], cfg: RunConfig) -> dict[str, Any]:
    from ocrnet.bench import benchmark

    report = benchmark([str(p) for p in paths], batch=list(cfg.bench_batches),
                       shape=shape[2:], duration=cfg.bench_duration,
                       progress=print if cfg.progress else None)
    return report.to_json()


# --- the report -------------------------------------------------------------------------------
def _report(cfg: RunConfig, models: list[tuple[str, str, str, Path]],
            evals: dict[str, dict[str, Any]], bench: dict[str, Any], checkpoint: Path,
            data_root: Path, scale: tuple[int, int], shape: list[int], *,
            intervals: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    by_model = {}
    for r in bench["results"]:
        if r["batch"] == min(cfg.bench_batches):
            by_model[r["model"]] = r
    bench_rows = list(by_model.values())
    baseline_ips = bench_rows[0]["throughput_ips"] if bench_rows else None
    fp32_miou = evals[models[0][0]]["mIoU"]
    rows = []
    for (label, backend, precision, _path), r in zip(models, bench_rows, strict=True):
        e = evals[label]
        ci = (intervals or {}).get(label)
        rows.append({
            "delta_ci": [ci["ci_low"], ci["ci_high"]] if ci else None,
            "delta_interval": ci,
            "model": label, "precision": precision, "backend": backend,
            "mIoU": e["mIoU"], "aAcc": e["aAcc"], "mAcc": e["mAcc"],
            "delta_mIoU": None if e["mIoU"] is None else round(e["mIoU"] - fp32_miou, 3),
            "latency_ms_p50": r["latency_ms"]["p50"], "throughput_ips": r["throughput_ips"],
            "ratio_to_fp32_eager": (r["throughput_ips"] / baseline_ips) if baseline_ips else None,
            "classes": e["classes"],
        })
    return {
        "demo": cfg.is_demo,
        "checkpoint": str(checkpoint),
        "data_root": str(data_root),
        "split": "val",
        "scale": list(scale),
        "input_shape": shape,
        "num_images": evals[models[0][0]]["num_images"],
        "results": rows,
        "machine": bench.get("machine"),
        "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
        "ocrnet": __version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per model for the summary tables (terminal and Markdown)."""
    return [[r["precision"], r["backend"], _fmt(r["mIoU"]), _delta_cell(r),
             _fmt(r["aAcc"]), _fmt(r["mAcc"]), _fmt(r["latency_ms_p50"], 1),
             _fmt(r["throughput_ips"]), f"{_fmt(r['ratio_to_fp32_eager'])}x"]
            for r in report["results"]]


def _delta_cell(row: dict[str, Any]) -> str:
    """ΔmIoU with its 95% paired bootstrap interval, e.g. `-0.072 [-0.110, -0.031]`."""
    ci = row.get("delta_ci")
    text = _fmt(row["delta_mIoU"], 3)
    return f"{text} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else text


def _table(report: dict[str, Any]) -> str:
    from ocrnet.tables import text_table

    head = ["precision", "backend", "mIoU", "ΔmIoU", "aAcc", "mAcc", "p50 ms", "img/s",
            "vs eager fp32"]
    return text_table(head, _rows(report), left=2)


def _markdown(report: dict[str, Any]) -> str:
    from ocrnet.tables import markdown_table

    kind = ("demo: the shipped synthetic-scenes model on generated validation scenes"
            if report["demo"] else "checkpoint on Cityscapes")
    lines = [
        "# ocrnet run report", "",
        f"- {kind}", f"- checkpoint: `{report['checkpoint']}`",
        f"- data: `{report['data_root']}` split `val`, {report['num_images']} images, "
        f"resized to fit {report['scale'][0]}x{report['scale'][1]}",
        f"- engine input: {'x'.join(map(str, report['input_shape']))}",
        f"- machine: {(report.get('machine') or {}).get('cpu', 'n/a')}",
        f"- date: {report['date']}, ocrnet {report['ocrnet']}", "",
        "## Accuracy and speed", "",
        markdown_table(["precision", "backend", "mIoU", "ΔmIoU vs eager [95% CI]", "aAcc", "mAcc",
                        "p50 latency (ms)", "throughput (img/s)", "vs PyTorch eager fp32"],
                       _rows(report), left=2),
    ]
    per_class = [[name, *(_fmt(r["classes"][i]["IoU"]) for r in report["results"])]
                 for i, name in enumerate(CLASSES)]
    lines += ["", "![mIoU and throughput per precision](summary.png)", "",
              "## Per-class IoU (%)", "",
              markdown_table(["class", *(r["model"] for r in report["results"])], per_class)]
    lines += ["", "## Samples (image | fp32 package | int8 (or lowest) package | ground truth)", ""]
    lines += [f"![sample {i}](samples/sample_{i}.png)" for i in range(report.get("samples", 0))]
    return "\n".join(lines) + "\n"


def _write_report(out: Path, report: dict[str, Any], cfg: RunConfig,
                  packages: dict[str, Path], data_root: Path, scale: tuple[int, int]) -> None:
    from ocrnet import visualize

    report["samples"] = _write_samples(out / "samples", cfg, packages, data_root, scale)
    visualize.precision_chart(report["results"], out / "summary.png", max_drop=cfg.max_drop,
                              title=f"{report['num_images']} val images, "
                              f"{'x'.join(map(str, report['input_shape']))}")
    from ocrnet.fileio import atomic_write_text

    atomic_write_text(out / "report.json", json.dumps(report, indent=1, default=str) + "\n")
    atomic_write_text(out / "report.md", _markdown(report))


def _write_samples(folder: Path, cfg: RunConfig, packages: dict[str, Path], data_root: Path,
                   scale: tuple[int, int]) -> int:
    """A few image | prediction | ground-truth strips, for people who'd rather look."""
    import numpy as np

    from ocrnet import visualize
    from ocrnet.data.cityscapes import discover, read_label
    from ocrnet.data.transforms import preprocess, read_image
    from ocrnet.engines import open_model

    samples = discover(data_root, "val")[: cfg.samples]
    if not samples:
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    low = packages.get("int8") or next((v for k, v in packages.items()
                                        if Precision.parse(k).quantized),
                                       next(reversed(packages.values()), None))
    engines = [open_model(p) for p in ([packages["fp32"]] if "fp32" in packages else [])]
    if low is not None and (not engines or low != packages.get("fp32")):
        engines.append(open_model(low))
    try:
        for i, sample in enumerate(samples):
            bgr = read_image(sample.image)
            batch = preprocess(bgr, scale)[None]
            preds = [engine.labels_at(batch, [bgr.shape[:2]])[0] for engine in engines]
            truth = read_label(sample.label, sample.label_format or "trainIds")
            rgb = bgr[:, :, ::-1]
            tiles = [rgb] + [visualize.overlay(rgb, p) for p in preds] + [visualize.colorize(truth)]
            strip = np.concatenate(tiles, axis=1)
            visualize.write_png(folder / f"sample_{i}.png", strip)  # RGB in, atomic
    finally:
        for engine in engines:
            engine.close()
    return len(samples)
