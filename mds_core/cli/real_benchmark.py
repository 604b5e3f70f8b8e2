"""``mds real-benchmark``: the command line of :mod:`mds_core.tools.real_benchmark`."""

from __future__ import annotations

import argparse
from typing import Any

from mds_core.tools import real_benchmark as _real
from mds_core.tools.real_benchmark import DAVIS_VEHICLES, RealBenchmarkConfig, run_real_benchmark


def run(args: argparse.Namespace) -> int:
    config = RealBenchmarkConfig(
        kitti_odometry=args.kitti_odometry, lidar_clips=args.lidar_clips, davis=args.davis,
        davis_sequences=tuple(args.davis_sequences.split(",")) if args.davis_sequences else DAVIS_VEHICLES,
        davis_fov=args.davis_fov, steps=args.steps, batch_size=args.batch_size, seed=args.seed, device=args.device,
        scene_flow=not args.no_scene_flow)
    try:
        config.validate()
    except ValueError as error:
        raise SystemExit(f"real-benchmark: error: {error}") from error
    run_real_benchmark(config, args.output, reuse=args.reuse)
    report = f"{args.output}/real.md"
    with open(report) as text:
        print(text.read())
    print(f"wrote {report} and real.json, pictures beside them")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``real-benchmark`` subcommand to an ``argparse`` subparsers object; ``func`` runs it."""
    parser = subparsers.add_parser(
        "real-benchmark", help="K=1, K=5 and the scene flow trained and scored on real footage (KITTI odometry, DAVIS, "
             "lidar clips)",
        description=_real.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kitti-odometry", metavar="ROOT",
                        help="KITTI odometry footage (ROOT/sequences/NN + ROOT/poses, or folders of image_l + "
                             "calib.txt + poses.txt): odometry ATE / RPE")
    parser.add_argument("--lidar-clips", metavar="ROOT",
                        help="short clips with sparse lidar depth (Dynamo-Depth's assets/tiny_* layout): the "
                             "--kitti-odometry models' depth is scored there, unseen, against a constant depth")
    parser.add_argument("--davis", metavar="ROOT", help="DAVIS 2016 (ROOT/JPEGImages/480p, ROOT/Annotations/480p): "
                                                        "motion AP / best F1 against the annotated mover")
    parser.add_argument("--davis-sequences", metavar="A,B,...",
                        help=f"DAVIS clips to train and score on (default: {','.join(DAVIS_VEHICLES)})")
    parser.add_argument("--davis-fov", type=float, default=60.0, help="DAVIS horizontal field of view, degrees")
    parser.add_argument("--output", default="outputs/real", help="output directory")
    parser.add_argument("--steps", type=int, default=400, help="training steps per model (default 400: six models "
                                                               "in about an hour on 2 CPU cores)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-scene-flow", action="store_true", help="leave out the scene-flow model")
    parser.add_argument("--reuse", action="store_true",
                        help="score again every finished model in OUTPUT trained with exactly this config, resume "
                             "every unfinished one")
    parser.set_defaults(func=run)
    return parser
