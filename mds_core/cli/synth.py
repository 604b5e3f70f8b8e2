"""``synth`` subcommand: write synthetic sequences as sequence folders or rosbag2 bags.

Usage (through the project's CLI, or standalone ``python -m mds_core.cli.synth``)::

    synth OUTPUT [--format folder|bag] [--storage mcap|sqlite3] [--sequences N]
                 [--frames F] [--width W] [--height H] [--fps HZ] [--seed S] [--name PREFIX]
                 [--image-format raw|jpeg|png] [--image-topic T] [--info-topic T]
                 [--depth-topic T] [--frame-id ID] [--scene city|road] [--crossing N]
                 [--pedestrians N] [--cyclists N] [--stop-probability P] [--stop-seconds S] [--turn-degrees DEG]

Sequence ``i`` is named ``PREFIX_iii`` and uses seed ``S + i``; with ``--format folder`` it
is written to ``OUTPUT/PREFIX_iii/`` (images, depth, motion, instances, calib.json,
poses.json), with ``--format bag`` to the bag directory ``OUTPUT/PREFIX_iii``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mds_core.progress import progress
from mds_core.tools.synth.config import SCENES, SynthConfig
from mds_core.tools.synth.frame import SynthFrame
from mds_core.tools.synth.writers import write_rosbag, write_sequence_folder


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``synth`` subcommand to an ``argparse`` subparsers object; ``func`` runs it."""
    parser = subparsers.add_parser(
        "synth",
        help="generate synthetic dynamic street sequences with exact ground truth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("output", type=Path, help="output directory (created if missing)")
    parser.add_argument("--format", choices=("folder", "bag"), default="folder", help="sequence folders or rosbag2 bags")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage plugin")
    parser.add_argument("--sequences", type=int, default=1, help="number of sequences (seeds SEED, SEED+1, ...)")
    parser.add_argument("--frames", type=int, default=100, help="frames per sequence")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    traffic = parser.add_argument_group("an intersection ahead, with traffic that does not follow the road")
    traffic.add_argument("--scene", choices=sorted(SCENES), default="city",
                         help="city (default): an intersection with 3 crossing cars, 4 pedestrians, 1 cyclist, and "
                              "30%% of the drives stop; road: traffic along the road only. The options below "
                              "replace the scene's numbers")
    traffic.add_argument("--crossing", type=int, metavar="N", help="cars crossing the road (3-12 m/s)")
    traffic.add_argument("--pedestrians", type=int, metavar="N",
                         help="pedestrians crossing at the crosswalk or walking along the kerbs")
    traffic.add_argument("--cyclists", type=int, metavar="N", help="cyclists crossing the road")
    traffic.add_argument("--stop-probability", type=float, metavar="P",
                         help="chance that a drive brakes, stands still before the crosswalk and starts again")
    traffic.add_argument("--stop-seconds", type=float, default=3.0, metavar="S", help="how long a stopping drive stands")
    traffic.add_argument("--turn-degrees", type=float, default=0.0, metavar="DEG",
                         help="the camera turns by this much (left > 0) over 2 s in the middle of the drive, on the "
                              "spot if it stands")
    parser.add_argument("--name", default="synth", help="sequence name prefix")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sequence folders")
    parser.add_argument("--image-format", choices=("raw", "jpeg", "png"), default="raw",
                        help="bag images as sensor_msgs/Image rgb8 (raw) or CompressedImage")
    parser.add_argument("--image-topic", default=None,
                        help="default /camera/image_raw, or /camera/image_raw/compressed for jpeg/png")
    parser.add_argument("--info-topic", default="/camera/camera_info")
    parser.add_argument("--depth-topic", default=None, help="also write GT depth (32FC1) on this topic")
    parser.add_argument("--frame-id", default="camera_optical_frame")
    parser.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    parser.set_defaults(func=run)
    return parser


def _fail(message: str) -> SystemExit:
    return SystemExit(f"synth: error: {message}")


def run(args: argparse.Namespace) -> int:
    """Execute the ``synth`` subcommand; returns 0, raises ``SystemExit(message)`` on errors."""
    output: Path = args.output
    if args.sequences < 1:
        raise _fail("--sequences must be >= 1")
    if output.exists() and not output.is_dir():
        raise _fail(f"output path {output} exists and is not a directory")
    for parent in output.parents:
        if parent.exists():
            if not parent.is_dir():
                raise _fail(f"cannot create {output}: {parent} is not a directory")
            break
    scene = dict(SCENES[args.scene])
    chosen = {"num_crossing": args.crossing, "num_pedestrians": args.pedestrians, "num_cyclists": args.cyclists,
              "camera_stop_probability": args.stop_probability}
    scene.update({key: value for key, value in chosen.items() if value is not None})
    try:
        configs = [
            SynthConfig(width=args.width, height=args.height, num_frames=args.frames, fps=args.fps, seed=args.seed + i,
                        camera_stop_seconds=args.stop_seconds, camera_turn_degrees=args.turn_degrees, **scene)
            for i in range(args.sequences)
        ]
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    names = [f"{args.name}_{i:03d}" for i in range(args.sequences)]
    if args.format == "bag":
        existing = [str(output / n) for n in names if (output / n).exists()]
        if existing:
            raise _fail(f"bag path(s) exist already: {', '.join(existing)}")

    bar = progress(total=args.frames * args.sequences, unit="frame", desc="synth", enabled=not args.no_progress)

    def on_frame(_: SynthFrame) -> None:
        if bar is not None:
            bar.update(1)

    try:
        output.mkdir(parents=True, exist_ok=True)
        for name, config in zip(names, configs):
            if bar is not None:
                bar.set_postfix_str(name)
            if args.format == "folder":
                write_sequence_folder(output, name, config, overwrite=args.overwrite, on_frame=on_frame)
            else:
                write_rosbag(
                    output / name,
                    config,
                    storage=args.storage,
                    image_topic=args.image_topic,
                    info_topic=args.info_topic,
                    frame_id=args.frame_id,
                    depth_topic=args.depth_topic,
                    on_frame=on_frame,
                    image_format=args.image_format,
                )
    except (FileExistsError, NotADirectoryError, PermissionError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    except OSError as exc:
        raise _fail(f"could not write to {output}: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m mds_core.cli.synth OUTPUT ...``."""
    parser = argparse.ArgumentParser(prog="mds")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["synth", *(argv if argv is not None else __import__("sys").argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
