#!/usr/bin/env bash
# Set up (if needed) and run the demo: generate street scenes, train briefly on the CPU,
# evaluate on a held-out sequence, and write PNG panels and a summary to outputs/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mds demo "$@"
