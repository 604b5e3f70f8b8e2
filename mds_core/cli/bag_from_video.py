"""``mds bag-from-video``: the command line of :mod:`mds_core.tools.footage_bag`.

Usage::

    mds bag-from-video VIDEO --focal F --output BAG [--fps N] [--topic-prefix /camera] [--storage mcap|sqlite3]
    mds bag-from-video ROOT --format davis|kitti_odometry|folder [--sequence NAME] [--fov DEG] --output BAG
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from mds_core.cli.footage import add_footage_arguments, footage_from_args
from mds_core.tools import footage_bag


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bag-from-video`` to the ``mds`` subcommands."""
    parser = subparsers.add_parser(
        "bag-from-video", help="a rosbag2 bag (Image rgb8 + CameraInfo) from a video or other footage",
        description=__doc__ + "\n" + (footage_bag.__doc__ or ""), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", metavar="VIDEO", help="a video file (or, with --format, another sequence)")
    parser.add_argument("--output", required=True, help="the bag directory to create (must not exist)")
    parser.add_argument("--topic-prefix", default="/camera",
                        help="topics PREFIX/image_raw and PREFIX/camera_info (default /camera)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage plugin")
    parser.add_argument("--frame-id", default="camera_optical_frame", help="header frame_id")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_footage_arguments(parser, default_format="video")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from mds_core.data.factory import open_sequence
    from mds_core.data.sequence_folder import DataError
    from mds_core.progress import progress

    output = Path(args.output)
    if output.exists():
        raise DataError(f"bag path {output} exists already (rosbag2 writers only create new bags)")
    sequence = open_sequence(args.format, args.input, footage_from_args(args))
    bar = progress(total=len(sequence), unit="frame", desc="bag", enabled=not args.quiet)
    try:
        footage_bag.write_footage_bag(sequence, output, source=str(args.input), storage=args.storage,
                                      topic_prefix=args.topic_prefix, frame_id=args.frame_id,
                                      on_frame=lambda _: bar.update(1))
    except BaseException as error:
        shutil.rmtree(output, ignore_errors=True)  # no half-written bag left behind to refuse the next try
        if isinstance(error, (FileExistsError, NotADirectoryError, PermissionError)):
            raise DataError(f"cannot write bag {output}: {error}") from error
        raise
    finally:
        bar.close()
    matrix, (width, height) = sequence.intrinsics()
    print(f"wrote {len(sequence)} frames ({width}x{height}, fx {matrix[0, 0]:.1f}) to {output}")
    return 0
