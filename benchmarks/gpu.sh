#!/usr/bin/env bash
# Encoder and end-to-end tiles/s with CUDA, in one command of under ten minutes on one GPU:
#   make setup && benchmarks/gpu.sh
# Runs bench_encoder.py (256 px images/s under each optimisation) and bench_scoring.py with the shipped model on a
# 8,192 px scene of real tiles (baseline, first and warm product jobs, and the encoder alone).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'benchmarks/gpu.sh: no CUDA device here; it measures the GPU path')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 200 "$PYTHON" benchmarks/bench_encoder.py --batch 32 --reps 3 --compile
timeout 360 "$PYTHON" benchmarks/bench_scoring.py --model models/weights/solarscan-res2netplus50.safetensors \
    --size 8192 --batch-size 32
