"""`ocrnet run`: the one-click job. export -> build each precision -> eval -> bench -> report.

With a checkpoint and a Cityscapes root it does the real thing; with neither it runs the offline
demo (the shipped demo model on generated validation scenes). Every step is cached by a content
hash of what it depends on (input file digests, options, upstream results, ocrnet's version), in
`<out>/steps/<step>.json`, so rerunning skips finished work and a killed run resumes; packages
are written atomically by `ocrnet build`, so a half-built one is never picked up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrnet.pipeline.cache import Say, StepCache, digest
from ocrnet.pipeline.config import (
    ASSETS,
    BUILD_RECIPE,
    DEFAULT_PRECISIONS,
    DEMO_CHECKPOINT,
    DEMO_DATA,
    DEMO_SCALE,
    HALF_REMAINDER_INT8,
    RunConfig,
    default_precisions,
)
from ocrnet.pipeline.report import AccuracyGateError, check_max_drop

__all__ = ["ASSETS", "BUILD_RECIPE", "DEFAULT_PRECISIONS", "DEMO_CHECKPOINT", "DEMO_DATA",
           "DEMO_SCALE", "HALF_REMAINDER_INT8", "AccuracyGateError", "RunConfig", "Say",
           "StepCache", "check_max_drop", "default_precisions", "run"]


def run(cfg: RunConfig, say: Say = print) -> dict[str, Any]:
    """Run every step (cached), write report.md/report.json/plots, return the report dict."""
    from ocrnet.engines import get_backend
    from ocrnet.pipeline import steps
    from ocrnet.pipeline.report import build_report, table, write_report

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = get_backend(cfg.backend)
    backend.require()
    if cfg.precisions is None:
        precisions = default_precisions(backend.runnable_precisions("cpu"))
    else:
        precisions = [backend.check_precision(p) for p in cfg.precisions]
    cache = StepCache(out, say)

    checkpoint, data_root, scale, shape = steps.resolve_inputs(cfg, out, cache)
    mode, shape = steps.run_mode(cfg, shape)
    ckpt_sha = digest(checkpoint)
    common = {"checkpoint": ckpt_sha, "data": str(data_root), "scale": scale,
              "limit": cfg.limit, **({"mode": mode} if mode["mode"] != "whole" else {})}
    if backend.source == "onnx":
        steps.export_verified(cfg, cache, checkpoint, ckpt_sha, out, shape)
    # BUILD_RECIPE is read here, from this module, so that patching ocrnet.pipeline's name works.
    packages = steps.build_all(cfg, cache, precisions, checkpoint, ckpt_sha, out, shape,
                               data_root, recipe=BUILD_RECIPE)

    models: list[steps.Model] = [("PyTorch eager", "torch", "fp32", checkpoint)]
    models += [(f"{cfg.backend} {p}", cfg.backend, p, pkg) for p, pkg in packages.items()]
    evals = steps.evaluate_all(models, cache, common, data_root, scale, cfg)
    intervals = steps.intervals(models, cache.dir, cfg.resamples)
    bench = steps.bench_all(models, cache, shape, cfg)

    report = build_report(cfg, models, evals, bench, checkpoint, data_root, scale, shape,
                          intervals=intervals, mode=mode)
    write_report(out, report, cfg, packages, data_root, scale)
    say(table(report))
    say(f"report: {out / 'report.md'}  (JSON: {out / 'report.json'})")
    if cfg.max_drop is not None:
        check_max_drop(report, cfg.max_drop)
    return report
