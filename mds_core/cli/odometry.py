"""``mds odometry`` and ``mds eval-odometry``: the command line of :mod:`mds_core.evaluation.odometry`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mds_core.cli.footage import add_footage_arguments, footage_from_args
from mds_core.config import ConfigError
from mds_core.evaluation import odometry


def register(subparsers: Any) -> None:
    """Add ``odometry`` and ``eval-odometry`` to the ``mds`` subcommands."""
    p = subparsers.add_parser("odometry", help="the camera trajectory from the ego-motion of a sequence folder",
                              description=odometry.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True, help="a sequence folder (images/ and calib.json), or with --format a "
                                                   "KITTI odometry sequence, a video, ... (one, or --sequence NAME)")
    add_footage_arguments(p)
    p.add_argument("--output", required=True, help="TUM trajectory file; the KITTI one goes beside it (.kitti.txt)")
    p.add_argument("--scale", choices=["none", "camera-height"], default="none",
                   help="none: depth units; camera-height: metres from the ground plane and --camera-height")
    p.add_argument("--camera-height", type=float, help="metres from the road to the camera centre")
    p.add_argument("--camera-pitch", type=float, default=0.0, help="expected pitch in degrees, positive down")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_odometry)

    p = subparsers.add_parser("eval-odometry", help="ATE and RPE of a trajectory against ground-truth poses",
                              description=odometry.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--estimate", required=True, help="TUM or KITTI trajectory (mds odometry writes both)")
    p.add_argument("--ground-truth", required=True,
                   help="a sequence folder (its poses.json), or a TUM or KITTI odometry poses file; with --format "
                        "kitti_odometry a KITTI odometry root or sequence (its poses, moved to --camera's camera)")
    add_footage_arguments(p, default_format=None)
    p.add_argument("--alignment", choices=["sim3", "se3"], default="sim3",
                   help="sim3 for an estimate in depth units, se3 for a metric one (camera-height scale)")
    p.add_argument("--plot", help="write a top-view PNG of both trajectories here")
    p.set_defaults(func=run_eval_odometry)


def run_odometry(args: argparse.Namespace) -> int:
    import json

    from mds_core.data.factory import open_sequence
    from mds_core.inference.predictor import Predictor

    if args.scale == "camera-height" and not (args.camera_height or 0) > 0:
        raise ConfigError("--scale camera-height needs --camera-height METRES > 0")
    sequence = open_sequence(args.format, args.input, footage_from_args(args))
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    height = args.camera_height if args.scale == "camera-height" else None
    trajectory = odometry.sequence_trajectory(predictor, sequence, height, args.camera_pitch)
    poses = trajectory.poses
    stamps_file = Path(getattr(sequence, "path", args.input)) / "poses.json"
    times = getattr(sequence, "timestamps", lambda: None)()  # real footage: times.txt, the video's frame rate
    if args.format == "folder" and stamps_file.is_file():
        stamps = [t * 1e-9 for t in json.loads(stamps_file.read_text())["timestamps_ns"]]
    else:
        stamps = list(times) if times is not None else [float(i) for i in range(len(poses))]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    odometry.write_tum(output, stamps[: len(poses)], poses)
    kitti = odometry.write_kitti(output.with_suffix(".kitti.txt"), poses)
    missing = f", {trajectory.frames_without_scale} frames without a ground plane" if height is not None else ""
    print(f"wrote {len(poses)} poses to {output} (TUM) and {kitti} (KITTI){missing}")
    return 0


def run_eval_odometry(args: argparse.Namespace) -> int:
    from mds_core.visualization import save_png

    try:
        _, estimate = odometry.read_trajectory(args.estimate)
        ground_truth = _ground_truth(args)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if len(estimate) != len(ground_truth):
        raise ConfigError(f"the estimate has {len(estimate)} poses, the ground truth {len(ground_truth)}")
    errors, aligned = odometry.evaluate_trajectory(estimate, ground_truth, args.alignment)
    print(errors.to_text())
    if args.plot:
        save_png(Path(args.plot), odometry.trajectory_plot(ground_truth, aligned, f"ATE {errors.ate_rmse:.3f}"))
        print(f"wrote {args.plot}")
    return 0


def _ground_truth(args: argparse.Namespace) -> list:
    """The ground-truth poses of ``--ground-truth``: a trajectory file or sequence folder, or with
    ``--format kitti_odometry`` the poses of a KITTI odometry sequence (of ``--camera``'s camera)."""
    from mds_core.data.factory import check_footage_options, open_sequence
    from mds_core.data.sequence_folder import DataError

    if args.format in (None, "folder"):
        footage = footage_from_args(args)
        check_footage_options("folder", footage)  # refuses options that have no use here
        if footage.sequences:
            raise ConfigError("--sequence is for --format kitti_odometry; give the sequence folder itself as "
                              "--ground-truth")
        return odometry.read_trajectory(args.ground_truth)[1]
    sequence = open_sequence(args.format, args.ground_truth, footage_from_args(args))
    poses = getattr(sequence, "poses", lambda: None)()
    if poses is None:
        where = "ROOT/poses/NN.txt or poses.txt" if args.format == "kitti_odometry" else "none in this format"
        raise DataError(f"{args.ground_truth}: no ground-truth camera poses for {sequence.name} ({where})")
    return poses
