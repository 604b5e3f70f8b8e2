#!/usr/bin/env bash
# Set up (if needed) and run the ROS demo: train a small model on generated street scenes (CPU,
# a few minutes, reused on later runs), write a synthetic rosbag2, run the perception node and the
# replay in separate processes, record the outputs, and write outputs/ros_demo/{ros_demo.png,summary.md}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:-$PWD/.venv}"
exec .venv/bin/mds ros-demo "$@"
