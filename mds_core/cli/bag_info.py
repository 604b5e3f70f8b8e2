"""``mds bag-info``: the command line of :mod:`mds_core.data.rosbag.info`."""

from __future__ import annotations

import argparse
from typing import Any

from mds_core.config import BagConfig, ConfigError
from mds_core.data.rosbag import info as _info
from mds_core.data.rosbag.info import CountingCache, format_info, inspect_bag, strip_path
from mds_core.data.rosbag.prepare import prepare_bag
from mds_core.data.sequence_folder import DataError


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bag-info`` to the ``mds`` subcommands."""
    parser = subparsers.add_parser(
        "bag-info", help="topics, rates and resolution of rosbag2 bags, and whether they can train",
        description=_info.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bags", nargs="+", metavar="PATH", help="rosbag2 directories or .mcap/.db3 files")
    parser.add_argument("--image-topic", default="", help="image topic (default: the bag's one image stream)")
    parser.add_argument("--camera-info-topic", default="", help="CameraInfo topic (default: found next to the images)")
    parser.add_argument("--intrinsics", nargs=4, type=float, metavar=("FX", "FY", "CX", "CY"),
                        help="intrinsics in pixels of the bag's images, instead of a CameraInfo")
    parser.add_argument("--max-gap", type=float, default=BagConfig.max_gap, help="seconds; larger gaps split sequences")
    parser.add_argument("--decode", action="store_true",
                        help="also decode every frame as training does (rate, stationary stretches) and report")
    parser.add_argument("--width", type=int, default=640, help="--decode: training width")
    parser.add_argument("--height", type=int, default=192, help="--decode: training height")
    parser.add_argument("--target-rate", type=float, default=0.0, help="--decode: data.bag.target_rate")
    parser.add_argument("--stationary-threshold", type=float, default=BagConfig.stationary_threshold,
                        help="--decode: data.bag.stationary_threshold")
    parser.add_argument("--stationary-keep", type=int, default=BagConfig.stationary_keep,
                        help="--decode: data.bag.stationary_keep (frames kept of each stationary stretch)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    bag = BagConfig(image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                    intrinsics=list(args.intrinsics) if args.intrinsics else None, max_gap=args.max_gap,
                    target_rate=args.target_rate, stationary_threshold=args.stationary_threshold,
                    stationary_keep=args.stationary_keep)
    bag.validate()
    if args.width <= 0 or args.height <= 0:
        raise ConfigError("--width and --height must be positive")
    usable = True
    for index, path in enumerate(args.bags):
        info = inspect_bag(path, bag)
        if args.decode and info.usable:
            try:
                _, info.preparation = prepare_bag(path, bag, CountingCache(args.height, args.width, 0), 3)
            except DataError as error:
                info.problems.append(f"preparation failed: {strip_path(error, str(path))}")
        usable &= info.usable
        print(("\n" if index else "") + format_info(info))
    return 0 if usable else 1
