"""The options every command that reads sequence data shares: ``--format`` and, for real footage,
``--focal``, ``--fov``, ``--fps``, ``--sequence`` and ``--camera`` (docs/training.md, "Real footage")."""

from __future__ import annotations

import argparse
import json

from mds_core.config import KITTI_ODOMETRY_CAMERAS, FootageConfig
from mds_core.data.factory import SEQUENCE_FORMATS

FORMAT_HELP = ("folder: sequence folders (images/ + calib.json); kitti: KITTI raw; kitti_odometry: KITTI odometry "
               "(ROOT/sequences/NN, or KITTI_sequence_N folders); davis: DAVIS (ROOT/JPEGImages/480p/<seq>); "
               "video: a video file or a folder of them; lidar_clips: clips with sparse lidar depth "
               "(Dynamo-Depth's assets/tiny_* layout)")


def add_footage_arguments(parser: argparse.ArgumentParser, default_format: str | None = "folder",
                          formats: tuple[str, ...] = SEQUENCE_FORMATS) -> None:
    """Add ``--format`` (default ``default_format``; None: the config's) and the real-footage options."""
    parser.add_argument("--format", choices=formats, default=default_format, help=FORMAT_HELP)
    parser.add_argument("--focal", type=float, metavar="PIXELS",
                        help="focal length in pixels of the native frames, principal point at the image centre "
                             "(davis, video: these have no calibration)")
    parser.add_argument("--fov", type=float, metavar="DEGREES",
                        help="instead of --focal: the horizontal field of view of the frames (davis, video)")
    parser.add_argument("--fps", type=float, metavar="N",
                        help="video: keep every k-th frame, about N per second (default: every frame)")
    parser.add_argument("--sequence", action="append", metavar="NAME",
                        help="use the sequence NAME only (repeatable): a KITTI odometry number, a DAVIS sequence, a "
                             "video's file name without extension, a sequence folder's name")
    parser.add_argument("--camera", choices=KITTI_ODOMETRY_CAMERAS,
                        help="kitti_odometry: the image folder (default image_2 when present, else image_0 / image_l)")


def footage_from_args(args: argparse.Namespace) -> FootageConfig:
    """The :class:`FootageConfig` of the command line's options (validated)."""
    footage = FootageConfig(focal=args.focal, fov=args.fov, fps=args.fps, sequences=list(args.sequence or []),
                            camera=args.camera or "")
    footage.validate()
    return footage


def footage_overrides(args: argparse.Namespace) -> list[str]:
    """``--set``-style overrides of ``data.format`` and ``data.footage`` for the options given (``mds train``)."""
    overrides = [f"data.format={args.format}"] if args.format else []
    for name in ("focal", "fov", "fps"):
        if getattr(args, name) is not None:
            overrides.append(f"data.footage.{name}={getattr(args, name)!r}")
    if args.sequence:
        overrides.append(f"data.footage.sequences={json.dumps(list(args.sequence))}")
    if args.camera:
        overrides.append(f"data.footage.camera={args.camera}")
    return overrides
