#!/usr/bin/env bash
# Set up (if needed), lint (ruff) and run the whole test suite on the CPU. Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
# training tests write checkpoints of a few hundred MB; a module's folders go when it is done, but one
# module (the scene-flow stages) needs about 5 GB at once: say so before a full disk fails it midway
free_kib=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 {print $4}')
echo "free disk for temporary files (${TMPDIR:-/tmp}): $((free_kib / 1024 / 1024)) GiB (the suite needs about 6)"
if [ "$free_kib" -lt $((6 * 1024 * 1024)) ]; then
    echo "warning: less than 6 GiB free; checkpoint-writing tests may fail with 'No space left on device'" >&2
fi
exec .venv/bin/python -m pytest -q test "$@"
