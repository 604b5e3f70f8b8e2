#!/usr/bin/env bash
# On a machine with a CUDA GPU: set up .venv (if needed) and measure what the GPU does for mds:
# training throughput and memory (640x192, ResNet18/50, fp32/AMP), AMP vs fp32 agreement, predictor
# latency (torch fp32/fp16, onnxruntime CUDA/TensorRT where offered), NCCL with two GPUs. About
# 8 minutes; writes outputs/gpu_check/gpu_report.json and gpu_report.md.
# Usage: bash scripts/gpu_check.sh [--dry-run] [--output DIR]   (--dry-run: the same on the CPU, tiny)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${VENV:-.venv}/bin/mds" gpu-check "$@"
