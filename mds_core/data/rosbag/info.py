"""``mds bag-info``: what a bag holds and whether ``mds train --bag`` can use it, and why.

One pass over the bag reads every message's log time (counts and rates per topic). Image
messages are deserialised for their stamp, encoding and size (compressed images: from the
JPEG/PNG header; the first one is decoded to check it), CameraInfo messages for the
calibration. Nothing is resized or cached. ``--decode`` also runs exactly the preparation
``mds train`` runs (decoding, rate skipping, stationary stretches) and prints its report.

A bag is usable when it has one image stream (or ``--image-topic``), readable frames of a
supported encoding, intrinsics (a CameraInfo of the images' size, or ``--intrinsics``) and at
least one stretch of 3 frames without a gap over ``--max-gap``. The exit status is 0 when
every bag is usable, 1 otherwise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mds_core.config import BagConfig
from mds_core.data.rosbag.cache import FrameCache
from mds_core.data.rosbag.camera import UNDISTORTABLE, is_rectified_topic
from mds_core.data.rosbag.decode import (
    COMPRESSED_TYPE,
    RAW_LAYOUTS,
    Calibration,
    FrameDecodeError,
    compressed_size,
    message_to_rgb,
    stamp_ns,
)
from mds_core.data.rosbag.prepare import BagReport, typestore
from mds_core.data.rosbag.reader import BagReader
from mds_core.data.rosbag.topics import choose_camera_info_topic, choose_image_topic
from mds_core.data.sequence_folder import DataError


@dataclass
class TopicStats:
    """Messages read on one topic; ``declared`` is the bag index's count (None: unknown)."""

    name: str
    msgtype: str
    declared: int | None
    read: int = 0
    first: int | None = None
    last: int | None = None
    details: str = ""

    @property
    def rate(self) -> float | None:
        if self.read < 2 or self.first is None or self.last is None or self.last <= self.first:
            return None
        return (self.read - 1) / ((self.last - self.first) / 1e9)


@dataclass
class BagInfo:
    """Everything ``bag-info`` prints about one bag; ``problems`` make it unusable."""

    path: str
    storage: str = ""
    files: int = 0
    size_bytes: int = 0
    duration: float | None = None
    topics: list[TopicStats] = field(default_factory=list)
    image_topic: str | None = None
    camera_info_topic: str | None = None
    frames: int = 0
    sizes: Counter = field(default_factory=Counter)
    encodings: Counter = field(default_factory=Counter)
    undecodable: Counter = field(default_factory=Counter)
    out_of_order: int = 0
    zero_stamps: int = 0
    gaps: int = 0
    usable_stretches: int = 0
    usable_frames: int = 0
    calibrations: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    preparation: BagReport | None = None

    @property
    def usable(self) -> bool:
        return not self.problems


def strip_path(error: Exception, path: str) -> str:
    text = str(error)
    return text[len(path) + 2:] if text.startswith(path + ": ") else text


def _image_details(raw_type: str, message: Any, info: BagInfo, check_decode: bool) -> None:
    if raw_type == COMPRESSED_TYPE:
        encoding = str(message.format) or "compressed"
        size = compressed_size(message.data)
        if check_decode or size is None:
            try:
                rgb = message_to_rgb(raw_type, message)
                size = (rgb.shape[1], rgb.shape[0])
            except FrameDecodeError as error:
                info.undecodable[str(error)] += 1
                return
    else:
        encoding = str(message.encoding)
        if encoding not in RAW_LAYOUTS:
            info.undecodable[f"unsupported encoding {encoding!r}"] += 1
            return
        size = (int(message.width), int(message.height))
        if check_decode:
            try:
                message_to_rgb(raw_type, message)
            except FrameDecodeError as error:
                info.undecodable[str(error)] += 1
                return
    info.encodings[encoding] += 1
    info.sizes[size] += 1


def inspect_bag(path: str | Path, bag: BagConfig, min_frames: int = 3) -> BagInfo:
    """Read ``path`` once and judge it (module docstring). Raises DataError if it is no bag."""
    where = str(path)
    reader = BagReader(path)
    info = BagInfo(path=where, storage=reader.storage, files=len(reader.files),
                   size_bytes=sum(f.stat().st_size for f in reader.files), duration=reader.duration)
    stats = {name: TopicStats(name, t.msgtype, t.count) for name, t in sorted(reader.topics.items())}
    info.topics = list(stats.values())
    try:
        info.image_topic = choose_image_topic(reader.topics, bag.image_topic, where)
    except DataError as error:
        info.problems.append(strip_path(error, where))
    if info.image_topic is not None:
        try:
            info.camera_info_topic = choose_camera_info_topic(reader.topics, info.image_topic, bag.camera_info_topic, where)
        except DataError as error:
            if bag.intrinsics is None:
                info.problems.append(strip_path(error, where))

    store = typestore()
    stamps: list[int] = []
    last_stamp: int | None = None
    first_image = True
    for raw in reader.messages(list(stats)):
        entry = stats[raw.topic]
        entry.read += 1
        entry.first = raw.log_time if entry.first is None else min(entry.first, raw.log_time)
        entry.last = raw.log_time if entry.last is None else max(entry.last, raw.log_time)
        if raw.topic not in (info.image_topic, info.camera_info_topic):
            continue
        try:
            message = store.deserialize_cdr(raw.data, raw.msgtype)
        except Exception as error:
            info.undecodable[f"unreadable message ({type(error).__name__})"] += 1
            continue
        if raw.topic == info.camera_info_topic:
            try:
                info.calibrations[Calibration.from_message(message)] += 1
            except FrameDecodeError as error:
                info.undecodable[f"CameraInfo: {error}"] += 1
            continue
        info.frames += 1
        stamp = stamp_ns(message)
        if stamp == 0:
            info.zero_stamps += 1
            stamp = raw.log_time
        if last_stamp is not None and stamp <= last_stamp:
            info.out_of_order += 1
        else:
            stamps.append(stamp)
            last_stamp = stamp
        _image_details(raw.msgtype, message, info, check_decode=first_image)
        first_image = False
    info.notes = list(dict.fromkeys(reader.notes))
    _judge(info, bag, stamps, min_frames)
    for entry in info.topics:
        if entry.name == info.image_topic:
            sizes = ", ".join(f"{w}x{h}" for (w, h), _ in info.sizes.most_common())
            entry.details = f"{', '.join(info.encodings) or '?'} {sizes}  <- training images"
        elif entry.name == info.camera_info_topic:
            models = {f"{c.width}x{c.height} {c.model or 'no model'}{'' if c.distorted else ' (no distortion)'}"
                      for c in info.calibrations}
            entry.details = f"{', '.join(sorted(models)) or 'unreadable'}  <- intrinsics"
    return info


def _judge(info: BagInfo, bag: BagConfig, stamps: list[int], min_frames: int) -> None:
    if info.notes:
        info.warnings.append("the bag is damaged (details below): only its intact messages are used")
    if info.image_topic is None:
        return
    decodable = sum(info.sizes.values())
    if not info.frames:
        info.problems.append(f"no readable message on {info.image_topic}")
        return
    if not decodable:
        info.problems.append(f"no frame can be decoded ({', '.join(info.undecodable)})")
    elif info.undecodable:
        info.warnings.append(f"{sum(info.undecodable.values())} message(s) cannot be used: "
                             + ", ".join(f"{n} {why}" for why, n in info.undecodable.most_common(3)))
    if len(info.sizes) > 1:
        info.warnings.append(f"mixed resolutions ({', '.join(f'{w}x{h}' for w, h in info.sizes)}): "
                             f"sequences are split where the size changes")
    if bag.intrinsics is not None:
        if len(info.sizes) > 1:
            info.problems.append("one --intrinsics for images of several sizes")
    elif info.camera_info_topic is None:
        info.problems.append("no CameraInfo topic: give the intrinsics with --intrinsics FX FY CX CY")
    elif not info.calibrations:
        info.problems.append(f"no readable CameraInfo on {info.camera_info_topic}: give --intrinsics FX FY CX CY")
    else:
        covered = {(c.width, c.height) for c in info.calibrations}
        missing = [] if (0, 0) in covered else [size for size in info.sizes if size not in covered]
        if missing:
            info.problems.append(f"no CameraInfo for the {', '.join(f'{w}x{h}' for w, h in missing)} images "
                                 f"(CameraInfo sizes: {', '.join(f'{w}x{h}' for w, h in sorted(covered))})")
        if len(info.calibrations) > 1:
            info.warnings.append(f"{len(info.calibrations)} different calibrations: sequences are split where it changes")
        for calibration in info.calibrations:
            if calibration.distorted:
                if is_rectified_topic(info.image_topic):
                    action = "the topic is rectified, so P is used and nothing is undistorted"
                elif bag.undistort and calibration.model in UNDISTORTABLE:
                    action = "removed when training (data.bag.undistort)"
                else:
                    action = "NOT removed (unsupported model or data.bag.undistort false)"
                info.warnings.append(f"{calibration.model} distortion: {action}")
                break
    if info.out_of_order:
        info.warnings.append(f"{info.out_of_order} frame(s) with a stamp not after the previous one (dropped)")
    if info.zero_stamps:
        info.warnings.append(f"{info.zero_stamps} frame(s) with a zero header stamp (the log time is used)")
    stretch = 1 if stamps else 0
    for a, b in zip(stamps, stamps[1:]):
        if (b - a) / 1e9 > bag.max_gap:
            info.gaps += 1
            info.usable_frames += stretch if stretch >= min_frames else 0
            info.usable_stretches += stretch >= min_frames
            stretch = 0
        stretch += 1
    info.usable_frames += stretch if stretch >= min_frames else 0
    info.usable_stretches += stretch >= min_frames
    if info.gaps:
        info.warnings.append(f"{info.gaps} gap(s) over {bag.max_gap} s split the frames into stretches")
    if decodable and not info.usable_stretches:
        info.problems.append(f"too few frames: no stretch of {min_frames} frames without a gap over "
                             f"{bag.max_gap} s (data.bag.max_gap)")


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size < 2**30 else f"{size / 2**30:.2f} GB"


def format_info(info: BagInfo) -> str:
    """The table and verdict ``mds bag-info`` prints for one bag."""
    duration = f", {info.duration:.1f} s" if info.duration is not None else ""
    lines = [f"{info.path}  ({info.storage}, {info.files} file(s), {_megabytes(info.size_bytes)}{duration})"]
    rows = [("topic", "type", "messages", "rate", "details")]
    for t in info.topics:
        count = str(t.read) if t.declared is None or t.declared == t.read else f"{t.read} of {t.declared}"
        rate = f"{t.rate:.1f} Hz" if t.rate is not None else "-"
        rows.append((t.name, t.msgtype, count, rate, t.details))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        lines.append("  " + "  ".join(row[i].ljust(widths[i]) if i != 2 else row[i].rjust(widths[i])
                                      for i in range(4)) + ("  " + row[4] if row[4] else ""))
    if info.usable:
        lines.append(f"usable for training: yes ({info.usable_frames} frames in {info.usable_stretches} stretch(es) "
                     f"before rate skipping and stationary removal)")
    else:
        lines.append("usable for training: NO")
        lines += [f"  - {p}" for p in info.problems]
    if info.warnings:
        lines.append("warnings:")
        lines += [f"  - {w}" for w in info.warnings]
    if info.notes:
        lines.append("damage:")
        lines += [f"  - {n}" for n in info.notes]
    if info.preparation is not None:
        lines.append("preparation as in training (--decode):")
        lines += ["  " + line for line in info.preparation.lines()]
    return "\n".join(lines)


class CountingCache(FrameCache):
    """A frame cache that keeps nothing (``--decode`` only reports)."""

    def append(self, frame):
        self._disk_frames += 1
        return self._disk_frames - 1
