#!/usr/bin/env bash
# Create .venv and install mds with its ROS wheels and test tools. Idempotent: re-running
# only reinstalls when setup.py changed. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.mds-installed"
want="$(sha256sum setup.py scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch + torchvision first, pinned to builds that import together (see README, "Install").
case "$(uname -m)" in
  aarch64|arm64) pip install -q "torch==2.9.1" "torchvision==0.24.1" ;;
  *)             pip install -q "torch==2.14.1" "torchvision==0.29.1" ;;
esac
# onnxruntime with OpenVINO on x86 CPUs (its CPU graphs run 1.4x faster), plain onnxruntime elsewhere.
# Both install the module onnxruntime: an environment holding the plain one gets the other cleanly.
case "$(uname -m)" in
  x86_64|amd64)
    extras="ros,openvino,dev"
    if pip show -q onnxruntime >/dev/null 2>&1; then
      pip uninstall -y -q onnxruntime onnxruntime-openvino >/dev/null 2>&1 || true
    fi ;;
  *) extras="ros,onnx,dev" ;;
esac
pip install -q -e ".[$extras]"
echo "$want" > "$stamp"
