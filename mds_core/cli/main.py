"""The ``mds`` command line: train, eval, infer, export, synth, bag-info, bag-from-video, benchmark, demo, accuracy.

Every subcommand reports a bad path, bag, checkpoint or config as one clear line on stderr and
exits with status 2; it never shows a traceback for a user error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mds_core.cli.footage import add_footage_arguments, footage_from_args, footage_overrides
from mds_core.config import ConfigError, TrainConfig, apply_overrides, load_config


def _user_errors() -> tuple[type[Exception], ...]:
    from mds_core.checkpoint import CheckpointError
    from mds_core.data.sequence_folder import DataError
    from mds_core.inference.onnx_backend import OnnxModelError
    from mds_core.inference.onnx_export import ExportError
    from mds_core.method.networks import PretrainedWeightsError

    return (ConfigError, DataError, CheckpointError, PretrainedWeightsError, FileNotFoundError, ExportError,
            OnnxModelError)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    config = load_config(args.config) if args.config else TrainConfig()
    overrides = list(args.set or [])
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.bag and args.format:
        raise ConfigError("--format is for --data; --bag reads rosbag2 bags")
    overrides += footage_overrides(args)
    if args.bag:
        overrides += ["data.format=rosbag", f"data.bag.paths={json.dumps([str(p) for p in args.bag])}"]
    if args.image_topic:
        overrides.append(f"data.bag.image_topic={json.dumps(args.image_topic)}")
    if args.camera_info_topic:
        overrides.append(f"data.bag.camera_info_topic={json.dumps(args.camera_info_topic)}")
    if args.intrinsics:
        overrides.append(f"data.bag.intrinsics={json.dumps(args.intrinsics)}")
    if args.output:
        overrides.append(f"output_dir={args.output}")
    if args.device:
        overrides.append(f"device={args.device}")
    return apply_overrides(config, overrides)


def _resumed_config(args: argparse.Namespace) -> tuple[TrainConfig, Path]:
    """The config and checkpoint file of ``--resume`` (a file, a run's output folder, or ``latest``).

    The config is the checkpoint's, with ``--set`` overrides. Resumed from a folder (or ``latest``:
    the output_dir that --config/--output/--set configure), the run continues in that folder.
    """
    from mds_core.checkpoint import LATEST, load_checkpoint, resolve_resume

    named = Path(args.resume)
    output_dir = _train_config(args).output_dir if args.resume == LATEST and not named.is_file() else ""
    path = resolve_resume(args.resume, output_dir)
    config = load_checkpoint(path, mmap=True).config
    if not named.is_file() and path.parent.name == "checkpoints":
        config.output_dir = str(path.parent.parent)
    return apply_overrides(config, list(args.set or [])), path


def cmd_train(args: argparse.Namespace) -> int:
    from mds_core.training.loop import train

    resume = None
    if args.resume:
        config, resume = _resumed_config(args)
    else:
        config = _train_config(args)
    result = train(config, resume=resume, init_from=args.init_from)
    if result.checkpoint is not None:
        print(f"trained {result.steps} steps; checkpoint: {result.checkpoint}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from mds_core.evaluation.evaluate import EvaluationRequest, run_evaluation

    request = EvaluationRequest(
        checkpoint=args.checkpoint, data=args.data, data_format=args.format, split=args.split,
        eigen_crop=args.eigen_crop, fixed_scale=args.fixed_scale, min_depth=args.min_depth,
        max_depth=args.max_depth, device=args.device, max_images=args.max_images,
        camera_height=args.camera_height if args.scale == "camera-height" else None, camera_pitch=args.camera_pitch,
        object_threshold=args.object_threshold, footage=footage_from_args(args),
        motion_evidence=not args.no_motion_evidence,
    )
    if not 0.0 <= args.object_threshold <= 1.0:
        raise ConfigError(f"--object-threshold must be in [0, 1], got {args.object_threshold}")
    if args.scale == "camera-height" and args.camera_height is None:
        raise ConfigError("--scale camera-height needs --camera-height METRES (the camera's height above the road)")
    if args.camera_height is not None and not args.camera_height > 0:
        raise ConfigError(f"--camera-height must be > 0 metres, got {args.camera_height}")
    report = run_evaluation(request, progress=not args.quiet)
    print(report.to_markdown())
    if args.output:
        report.save(args.output)
        print(f"wrote {args.output}")
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from mds_core.data.factory import open_sequence
    from mds_core.inference.predictor import Predictor
    from mds_core.inference.sequence import infer_sequence

    sequence = open_sequence(args.format, args.input, footage_from_args(args))
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device,
                                          motion_evidence=not args.no_motion_evidence)
    summary = infer_sequence(predictor, sequence, args.output, progress=not args.quiet,
                             max_frames=args.max_frames)
    print(f"wrote {summary.frames} frames to {summary.output}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from mds_core.tools.benchmark import TrainStepBenchmark, run_train_step_benchmark

    spec = TrainStepBenchmark(width=args.width, height=args.height, encoder=args.encoder,
                              num_components=args.components, batch_size=args.batch_size,
                              steps=args.steps, warmup=args.warmup, device=args.device, amp=not args.no_amp,
                              overrides=list(args.set or []), checkpoint=args.checkpoint,
                              keep_denormals=args.keep_denormals)
    print(run_train_step_benchmark(spec).to_text())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mds_core.tools.demo import DemoSettings, run_demo

    summary = run_demo(DemoSettings(output=Path(args.output), steps=args.steps, seed=args.seed, scene=args.scene))
    print(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mds", description=(
        "MonoDepthSeg: self-supervised monocular depth and scene decomposition."))
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train on sequence folders, KITTI raw, real footage or rosbag2 bags",
                       description="Train MonoDepthSeg. Settings come from --config (YAML/JSON, see "
                                   "config/train_*.yaml) and --set section.key=value overrides.")
    p.add_argument("--config", help="YAML or JSON training config")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", help="data root (overrides data.root)")
    source.add_argument("--bag", nargs="+", metavar="PATH",
                        help="train on rosbag2 bags (directories, .mcap or .db3): sets data.format=rosbag "
                             "and data.bag.paths")
    p.add_argument("--image-topic", help="bag image topic (data.bag.image_topic; default: the bag's one image stream)")
    p.add_argument("--camera-info-topic", help="bag CameraInfo topic (data.bag.camera_info_topic; default: found)")
    p.add_argument("--intrinsics", nargs=4, type=float, metavar=("FX", "FY", "CX", "CY"),
                   help="intrinsics in pixels of the bag's images, instead of its CameraInfo (data.bag.intrinsics)")
    add_footage_arguments(p, default_format=None)  # data.format and data.footage; default: the config's
    p.add_argument("--output", help="output directory (overrides output_dir)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides device)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config entry, e.g. optim.max_steps=100")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", metavar="CHECKPOINT|FOLDER|latest",
                       help="continue a run exactly: from a checkpoint file, from the newest complete checkpoint in "
                            "a run's output folder, or with 'latest' from the newest one in the configured output "
                            "folder (--output / output_dir)")
    group.add_argument("--init-from", help="start a new run from a checkpoint's weights")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="Eigen depth metrics and motion segmentation, each where the data have its "
                                    "ground truth (depth; motion labels, e.g. DAVIS)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="the data root (--format): sequence folders, KITTI raw, DAVIS, ...")
    add_footage_arguments(p)
    p.add_argument("--split", help="split file (KITTI: e.g. splits/eigen/test_files.txt)")
    p.add_argument("--eigen-crop", action="store_true", help="apply the Eigen crop (KITTI)")
    p.add_argument("--fixed-scale", type=float, help="multiply predictions by this instead of per-image median scaling")
    p.add_argument("--scale", choices=["median", "camera-height"], default="median",
                   help="median: per-image median scaling (Monodepth2); camera-height: metric scale from the ground "
                        "plane and --camera-height, no ground truth used")
    p.add_argument("--camera-height", type=float, help="metres from the road to the camera centre (--scale camera-height)")
    p.add_argument("--camera-pitch", type=float, default=0.0, help="expected camera pitch in degrees, positive down")
    p.add_argument("--object-threshold", type=float, default=0.3,
                   help="moving probability from which a pixel belongs to a scored moving object (the node's "
                        "moving_threshold)")
    p.add_argument("--min-depth", type=float, default=1e-3)
    p.add_argument("--max-depth", type=float, default=80.0)
    p.add_argument("--max-images", type=int)
    p.add_argument("--no-motion-evidence", action="store_true",
                   help="the moving probability from the masks alone, as in the paper (default: weighed with the "
                        "optical flow's evidence where the frames can show motion; docs/method.md)")
    p.add_argument("--device", default="auto")
    p.add_argument("--output", help="write the report as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("infer", help="depth + decomposition for every frame of a sequence (folder, video, ...)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True, help="a sequence folder (with images/ and calib.json), or with --format "
                                                   "a video, a DAVIS or KITTI root (one sequence, or --sequence NAME)")
    add_footage_arguments(p)
    p.add_argument("--output", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-frames", type=int)
    p.add_argument("--no-motion-evidence", action="store_true",
                   help="the moving probability from the masks alone, as in the paper (default: weighed with the "
                        "optical flow's evidence where the frames can show motion; docs/method.md)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("benchmark", help="training step time and peak memory")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--encoder", choices=["resnet18", "resnet50"], default="resnet18")
    p.add_argument("--components", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a training config entry after the options above, e.g. loss.mask_assignment_weight=0")
    p.add_argument("--checkpoint", help="time the steps that continue this training (its config, weights, optimiser and "
                                        "stage, on its own data; the size options are then ignored)")
    p.add_argument("--keep-denormals", action="store_true",
                   help="compute subnormal floats instead of flushing them to zero as training does on the CPU "
                        "(to measure what that saves: trained networks make them)")
    p.set_defaults(func=cmd_benchmark)

    from mds_core.tools.synth.config import SCENES

    p = sub.add_parser("demo", help="generate scenes, train briefly, evaluate, write panels")
    p.add_argument("--output", default="outputs/demo")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scene", choices=sorted(SCENES), default="road",
                   help="generated scenes: road (traffic along the road) or city (also crossing traffic, pedestrians, "
                        "cyclists, drives that stop)")
    p.set_defaults(func=cmd_demo)

    from mds_core.cli.accuracy import register as register_accuracy
    from mds_core.cli.bag_from_video import register as register_bag_from_video
    from mds_core.cli.bag_info import register as register_bag_info
    from mds_core.cli.export import register as register_export
    from mds_core.cli.gpu_check import register as register_gpu_check
    from mds_core.cli.odometry import register as register_odometry
    from mds_core.cli.real_benchmark import register as register_real_benchmark
    from mds_core.cli.synth import register as register_synth

    register_synth(sub)
    register_bag_info(sub)
    register_bag_from_video(sub)
    register_accuracy(sub)
    register_real_benchmark(sub)
    register_export(sub)
    register_gpu_check(sub)
    register_odometry(sub)
    _register_plugins(sub)
    return parser


def _register_plugins(sub) -> None:
    """Subcommands of other installed parts (``mds.commands`` entry points: the ROS demo and benchmark
    live in ``mds_ros``, which ``mds_core`` must not import)."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="mds.commands"):
        try:
            register = entry.load()
        except ImportError as error:  # e.g. mds_ros without rclpy: its commands are simply absent
            logging.getLogger(__name__).debug("mds.commands %s not available: %s", entry.name, error)
            continue
        register(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.func(args) or 0)
    except _user_errors() as error:
        print(f"mds {args.command}: error: {error}", file=sys.stderr)
        return 2
    except SystemExit as error:  # subcommands may stop with a message (e.g. synth)
        if isinstance(error.code, str):
            message = error.code.split("error: ", 1)[-1]
            print(f"mds {args.command}: error: {message}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print(f"mds {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
