#!/usr/bin/env bash
# The GPU benchmark (issue: NVIDIA GPU): build AOTInductor packages for CUDA and compare them
# with PyTorch eager fp32 at batch 1 and 8, 1024x2048. For an NVIDIA machine with torch (CUDA)
# installed and no network; about 8 minutes with compiles.
#   bash benchmarks/gpu.sh OUT_DIR [CHECKPOINT]
# Writes OUT_DIR/gpu.json, gpu.md and gpu.png, and the build logs. Without CHECKPOINT it uses
# random weights (speed does not depend on them).
set -euo pipefail
OUT=${1:?usage: bash benchmarks/gpu.sh OUT_DIR [CHECKPOINT]}
CKPT=${2:-}
HERE=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$HERE/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-1024x2048}
mkdir -p "$OUT"

$PY - <<PYEOF
import torch
assert "$DEVICE" == "cpu" or torch.cuda.is_available(), "no CUDA GPU visible to torch"
print("torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
PYEOF

if [ -z "$CKPT" ]; then
  CKPT="$OUT/hr18_random.pth"
  $PY -c "
import torch; from ocrnet.model import build_model, save_checkpoint
torch.manual_seed(0); save_checkpoint('$CKPT', build_model('hr18'))"
fi

pkgs=()
for batch in 1 8; do
  for precision in fp16 bf16; do
    pkg="$OUT/torch-$DEVICE-$precision-b$batch"
    if [ ! -f "$pkg/ocrnet.json" ]; then
      $PY -m ocrnet build "$CKPT" --backend torch --device "$DEVICE" --precision "$precision" \
        --shape "${batch}x3x${SHAPE}" --out "$pkg" --overwrite 2>&1 | tee "$pkg.build.log"
    fi
    pkgs+=("$pkg")
  done
done

# eager fp32 (the baseline, first) and every package, interleaved, batch 1 and 8
for batch in 1 8; do
  sel=()
  for p in "${pkgs[@]}"; do case "$p" in *-b$batch) sel+=("$p");; esac; done
  $PY -m ocrnet bench "$CKPT" "${sel[@]}" --device "$DEVICE" --batch "$batch" \
    --shape "$SHAPE" --duration "${DURATION:-10}" \
    --json "$OUT/gpu_b$batch.json" --markdown "$OUT/gpu_b$batch.md" --plot "$OUT/gpu_b$batch.png"
done
echo "results in $OUT"
