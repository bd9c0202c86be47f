"""One process per model: for models too big to share memory (batch 8 at 1024x2048).

Each model is measured by a fresh Python (`python -m ocrnet.bench.isolate`) that gets the whole
`BenchSettings` as JSON, so every setting reaches it without a list of options to keep in step;
the settings carry one seed, so every process measures the same inputs. The reports are merged
with ratios to the first model. The runs are not interleaved: the merged report says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ocrnet.bench.report import BenchReport, merge_reports
from ocrnet.bench.settings import BenchSettings
from ocrnet.errors import OcrnetError


def benchmark_isolated(models: Sequence[str | os.PathLike[str]], settings: BenchSettings, *,
                       progress: bool = True) -> BenchReport:
    """Benchmark each model path in a process of its own, one after another; merge the reports.

    Progress lines (`progress=False`: none) and the children's errors go to stderr. A child
    that fails (a user error, or killed for memory) raises `OcrnetError` naming the model.
    """
    settings = settings.with_seed()
    reports = []
    with tempfile.TemporaryDirectory(prefix="ocrnet-bench-") as tmp:
        config = Path(tmp) / "settings.json"
        config.write_text(json.dumps(settings.to_json()))
        for i, model in enumerate(models):
            out = Path(tmp) / f"{i}.json"
            if progress:
                print(f"[{i + 1}/{len(models)}] {model}: own process", file=sys.stderr,
                      flush=True)
            done = subprocess.run([sys.executable, "-m", "ocrnet.bench.isolate", str(config),
                                   os.fspath(model), str(out), str(int(progress))],
                                  stdout=subprocess.DEVNULL)
            if done.returncode != 0:
                killed = ", killed: out of memory?" if done.returncode < 0 else ""
                raise OcrnetError(f"benchmarking {model} in its own process failed (exit "
                                  f"{done.returncode}{killed}); its messages are above")
            reports.append(BenchReport.from_json(json.loads(out.read_text())))
    return merge_reports(reports)


def _child(argv: Sequence[str]) -> int:
    """SETTINGS.json MODEL OUT.json PROGRESS(0|1): benchmark MODEL alone, write its report."""
    from ocrnet.bench.harness import benchmark

    config, model, out, progress = argv

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        settings = BenchSettings.from_json(json.loads(Path(config).read_text()))
        report = benchmark([model], settings, progress=say if progress == "1" else None)
    except OcrnetError as err:  # one line, as the CLI prints user errors
        print(f"ocrnet bench: error: {err}", file=sys.stderr)
        return 1
    report.save_json(out)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
