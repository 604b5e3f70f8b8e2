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
pip install -q -e ".[ros,onnx,dev]"
echo "$want" > "$stamp"
