#!/usr/bin/env bash
# Set up (if needed), lint (ruff) and run the whole test suite on the CPU. Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q test "$@"
