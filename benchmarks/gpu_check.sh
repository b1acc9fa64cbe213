#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU where PyTorch, onnx, onnxruntime, typer, rich,
# safetensors, scipy and scikit-learn are already installed and nothing can be downloaded.
# Installs abrl on top (no dependencies, no build isolation: both would need the network), then
# runs benchmarks/gpu_check.py, which writes one JSON of what ran, failed or was skipped.
#
#   bash benchmarks/gpu_check.sh [OUT.json]      (default benchmarks/results/gpu_check.json)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results/gpu_check.json}"
PY="${PYTHON:-python3}"
nvidia-smi -L || echo "nvidia-smi: no GPU listed"
if ! "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . ; then
    echo "editable install failed; installing a copy" >&2
    "$PY" -m pip install --quiet --no-deps --no-build-isolation . || exit 1
fi
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py --out "$OUT" "${@:2}"
