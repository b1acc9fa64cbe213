#!/usr/bin/env bash
# The transfer-cpu grid (issue 23) on a lent GPU machine, as one prepared command.
# The machine has PyTorch, onnx, typer, rich, safetensors, scipy and scikit-learn and no network;
# ../shared is not there, so the data travel packed in .devdata/ (ignored by git):
#   .devdata/ti100.tar.xz                    tar of ../shared/data/tiny-imagenet-100, xz
#   .devdata/pretrained.safetensors.xz       the pretrained backbone, xz
# They are unpacked to ../shared/data/ beside the checkout, the path configs/transfer-cpu.yaml
# names, so the runs' configs equal the local plan's and `abrl reproduce --resume` accepts them.
#
#   bash benchmarks/grid_gpu.sh OUTDIR [JOBS] [DEADLINE_S] [SEEDS] [VARIANTS] [LIMIT_S]
# LIMIT_S stops the grid so that what finished is still packed (give the device call more).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?give an output folder}"; JOBS="${2:-8}"; DEADLINE="${3:-400}"; SEEDS="${4:-0,1,2}"
VARIANTS="${5:-}"; LIMIT="${6:-100000}"
PY="${PYTHON:-python3}"
nvidia-smi -L || true
DATA=../shared/data
mkdir -p "$DATA/pretrained"
"$PY" - <<'PY' || exit 1
import lzma, shutil, tarfile
with tarfile.open(".devdata/ti100.tar.xz") as t:
    t.extractall("../shared/data", filter="data")
with lzma.open(".devdata/pretrained.safetensors.xz") as src, open(
        "../shared/data/pretrained/resnet18-cifarstem-tinyimagenet-pretrain.safetensors", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
"$PY" -m pip install --quiet --no-deps --no-build-isolation -e . || exit 1
export PYTHONUNBUFFERED=1 ABRL_CACHE_DIR=/tmp/abrl-cache
GRID="$OUT/grid"
timeout "$LIMIT" "$PY" benchmarks/grid_parallel.py --preset transfer-cpu --seeds "$SEEDS" \
    --out "$GRID" --jobs "$JOBS" --threads 2 --deadline "$DEADLINE" ${VARIANTS:+--variants "$VARIANTS"} \
    2>&1 | tee "$OUT/grid_parallel.log"
abrl reproduce --preset transfer-cpu --seeds "$SEEDS" --out "$GRID" --report-only --no-latency \
    --no-costs --quiet > "$OUT/report.txt" 2>&1
tar cf "$OUT/grid.tar" --exclude=model.safetensors --exclude=state.pt --exclude='*.onnx' -C "$GRID" .
ls -la "$OUT"
