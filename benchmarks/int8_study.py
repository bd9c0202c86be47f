"""int8 on the trained demo model: mIoU (vs fp32) and speed per calibration method, count and
kept-float parts. The numbers that chose `ocrnet build`'s int8 defaults.

    python benchmarks/int8_study.py --data-root runs/demo/data --out runs/int8_study

Uses the shipped demo model and generated demo scenes (calibration: train split; scoring: val).
Every row is built and evaluated here; the table goes to stdout and `<out>/int8_study.{json,md}`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ocrnet.bench import benchmark
from ocrnet.build import build_package
from ocrnet.evaluate import evaluate
from ocrnet.export import export_onnx
from ocrnet.pipeline import DEMO_CHECKPOINT, DEMO_SCALE

# (backend, calib_method, calib_count, keep_float)
GRID = [
    ("openvino", "mixed", 32, ["attention"]),
    ("openvino", "mixed", 8, ["attention"]),
    ("openvino", "mixed", 64, ["attention"]),
    ("openvino", "performance", 32, ["attention"]),
    ("openvino", "mixed", 32, ["none"]),
    ("openvino", "mixed", 32, ["attention", "classifiers"]),
    ("openvino", "mixed", 32, ["attention", "first_conv"]),
    ("onnxruntime", "minmax", 32, ["attention"]),
    ("onnxruntime", "entropy", 32, ["attention"]),
    ("onnxruntime", "percentile", 32, ["attention"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="demo scenes (train for calibration)")
    parser.add_argument("--out", default="runs/int8_study")
    parser.add_argument("--limit", type=int, help="val images (default: all)")
    parser.add_argument("--rows", type=int, nargs="+", help="indices into GRID (default: all)")
    parser.add_argument("--bench-duration", type=float, default=3.0)
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shape = [1, 3, DEMO_SCALE[1], DEMO_SCALE[0]]
    onnx_path = out / "model.onnx"
    if not onnx_path.exists():  # one export serves every row
        export_onnx(str(DEMO_CHECKPOINT), onnx_path, shape=shape)
    fp32 = {}
    for backend in ("openvino", "onnxruntime"):
        pkg = out / f"{backend}-fp32"
        if not (pkg / "ocrnet.json").exists():
            build_package(onnx_path, pkg, backend=backend, precision="fp32", overwrite=True)
        fp32[backend] = (pkg, evaluate(str(pkg), args.data_root, limit=args.limit,
                                       scale=DEMO_SCALE, progress=False).to_json()["mIoU"])
    rows = []
    for i, (backend, method, count, keep) in enumerate(GRID):
        if args.rows and i not in args.rows:
            continue
        pkg = out / f"{backend}-int8-{method}-{count}-{'+'.join(keep)}"
        started = time.perf_counter()
        if not (pkg / "ocrnet.json").exists():
            build_package(onnx_path, pkg, backend=backend, precision="int8",
                          calib_dir=args.data_root, calib_count=count, calib_method=method,
                          keep_float=keep, overwrite=True)
        build_s = time.perf_counter() - started
        result = evaluate(str(pkg), args.data_root, limit=args.limit, scale=DEMO_SCALE,
                          progress=False).to_json()
        speed = benchmark([str(fp32[backend][0]), str(pkg)], shape=shape[2:],
                          duration=args.bench_duration).to_json()["results"]
        row = {"backend": backend, "calib_method": method, "calib_count": count,
               "keep_float": keep, "mIoU": result["mIoU"],
               "delta_vs_fp32": round(result["mIoU"] - fp32[backend][1], 3),
               "speedup_vs_fp32_package": round(speed[1]["throughput_ips"]
                                                / speed[0]["throughput_ips"], 2),
               "build_s": round(build_s, 1)}
        rows.append(row)
        print(json.dumps(row))
    head = "| backend | method | count | kept float | mIoU | Δ vs fp32 | speed vs fp32 package |"
    lines = ["fp32 mIoU: " + ", ".join(f"{b} {m:.2f}" for b, (_, m) in fp32.items()), "",
             head, "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['calib_method']} | {r['calib_count']} | "
              f"{'+'.join(r['keep_float'])} | {r['mIoU']:.2f} | {r['delta_vs_fp32']:+.3f} | "
              f"{r['speedup_vs_fp32_package']:.2f}x |" for r in rows]
    print("\n".join(lines))
    (out / "int8_study.md").write_text("\n".join(lines) + "\n")
    (out / "int8_study.json").write_text(json.dumps(
        {"fp32_mIoU": {b: m for b, (_, m) in fp32.items()}, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
