"""The ``mds`` subcommands that need ROS (registered through the ``mds.commands`` entry point
group, so that ``mds_core`` imports nothing from ROS): ``ros-demo``, ``ros-benchmark`` and
``ros-lifecycle``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ros-demo", help="the ROS node on a replayed synthetic bag (separate processes)",
                              description="Train (or reuse) a small model, write a synthetic rosbag2, run the "
                              "perception node and mds_replay in separate processes, record the outputs and "
                              "write ros_demo.png and summary.md.")
    p.add_argument("--output", default="outputs/ros_demo")
    p.add_argument("--checkpoint", help="use this model instead of training the demo model")
    p.add_argument("--steps", type=int, default=300, help="training steps when the demo model is trained")
    p.add_argument("--frames", type=int, default=40, help="frames in the replayed bag")
    p.add_argument("--rate", type=float, default=1.0, help="replay speed factor (bag at 10 frames/s)")
    p.add_argument("--device", default="auto")
    p.add_argument("--bag", help="replay this rosbag2 (e.g. real footage from 'mds bag-from-video') instead of a "
                                 "generated drive; scored against its depth_gt/motion_gt topics where it has them")
    p.add_argument("--scene", choices=("road", "city"), default="road",
                   help="road: traffic along the road; city: crossing traffic, pedestrians and cyclists, the camera "
                        "stops halfway (scored on its own)")
    p.set_defaults(func=cmd_ros_demo)

    p = subparsers.add_parser("ros-benchmark", help="the perception node's rates, latency and memory on a replay")
    p.add_argument("--checkpoint", help="model to run (default: an untrained model of --width/--height/--components)")
    p.add_argument("--width", type=int, default=320, help="network input width (untrained model)")
    p.add_argument("--height", type=int, default=96, help="network input height (untrained model)")
    p.add_argument("--components", type=int, default=5)
    p.add_argument("--camera-width", type=int, default=640)
    p.add_argument("--camera-height", type=int, default=192)
    p.add_argument("--frames", type=int, default=300, help="frames replayed")
    p.add_argument("--fps", type=float, default=10.0, help="camera rate of the replayed stream")
    p.add_argument("--device", default="auto")
    p.add_argument("--output", default="outputs/ros_benchmark")
    p.add_argument("--online", action="store_true", help="also run the online training node on the stream")
    p.add_argument("--backends", default="torch",
                   help="comma-separated node backends to run one after the other: torch, onnxruntime "
                        "(with several: a table of their rates and ratio)")
    p.add_argument("--sizes", default="", help="comma-separated model input sizes WxH to run (untrained models; "
                   "default: --width x --height)")
    p.set_defaults(func=cmd_ros_benchmark)

    p = subparsers.add_parser("ros-lifecycle", help="get or change a lifecycle node's state (like ros2 lifecycle)",
                              description="Calls NODE/get_state or NODE/change_state and prints the state: "
                              "configure loads the model, activate starts, deactivate pauses, cleanup frees it.")
    p.add_argument("node", help="the node's full name, e.g. /mds_perception or /mds_trainer")
    p.add_argument("transition", choices=("get", "configure", "activate", "deactivate", "cleanup", "shutdown"))
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the node and the transition")
    p.set_defaults(func=cmd_ros_lifecycle)


def cmd_ros_lifecycle(args: argparse.Namespace) -> int:
    from mds_ros.tools.lifecycle_client import LifecycleError, run

    try:
        return run(args.node, args.transition, args.timeout)
    except LifecycleError as error:
        raise SystemExit(f"error: {error}") from None


def cmd_ros_demo(args: argparse.Namespace) -> int:
    from mds_ros.tools.demo import RosDemoSettings, run_ros_demo

    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
    settings = RosDemoSettings(output=Path(args.output), steps=args.steps, frames=args.frames, rate=args.rate,
                               device=args.device, checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                               scene=args.scene, bag=Path(args.bag) if args.bag else None)
    print(run_ros_demo(settings))
    return 0


def cmd_ros_benchmark(args: argparse.Namespace) -> int:
    from mds_core.config import ConfigError
    from mds_ros.tools.benchmark import NodeBenchmark, compare_backends

    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in ("torch", "onnxruntime")]
    if unknown or not backends:
        raise ConfigError(f"--backends: expected torch and/or onnxruntime, got {args.backends!r}")
    try:
        sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.sizes.split(",") if size.strip()]
    except ValueError as error:
        raise ConfigError(f"--sizes: expected WxH[,WxH...], got {args.sizes!r}") from error
    if any(len(size) != 2 or size[0] % 32 or size[1] % 32 or min(size) <= 0 for size in sizes):
        raise ConfigError(f"--sizes: each size must be WxH with multiples of 32, got {args.sizes!r}")
    if sizes and args.checkpoint:
        raise ConfigError("--sizes runs untrained models of each size; a --checkpoint runs at its own size")
    spec = NodeBenchmark(checkpoint=args.checkpoint, width=args.width, height=args.height,
                         components=args.components, camera_width=args.camera_width,
                         camera_height=args.camera_height, frames=args.frames, fps=args.fps, device=args.device,
                         output=Path(args.output), online=args.online)
    print(compare_backends(spec, backends, sizes or [(args.width, args.height)]))
    return 0
