"""Training sequences from bags: one sequential pass per bag, frames decoded exactly once.

For each image message, in bag order:

1. its header stamp is the frame time (the bag log time when the stamp is zero); a stamp not
   after the previous frame's is dropped (duplicate or out of order);
2. a frame more than ``max_gap`` seconds after the last kept frame starts a new sequence;
3. with ``target_rate`` > 0, a frame less than ``0.9 / target_rate`` seconds after the last
   kept frame is skipped, before decoding (0.9 so camera jitter does not halve the rate);
4. the frame is decoded, resized to the training resolution (area interpolation) and its
   64x32 grey thumbnail compared with the last kept frame's: a mean absolute difference below
   ``stationary_threshold`` means the camera stood still. The first ``stationary_keep`` frames
   of such a stretch are kept (the decomposition learns a standing camera from them), the rest
   dropped. The reference is the last *kept* frame (also across a gap), so a long stop drops
   the rest of it and then, being longer than ``max_gap``, splits the sequence; a slow creep
   keeps a frame whenever the view has changed enough;
5. kept frames go to the :class:`~mds_core.data.rosbag.cache.FrameCache`.

After the pass each frame gets the CameraInfo with its exact stamp, or else the one nearest in
time (the report says how many of each and the largest offset). Sequences are split where the
image size or the calibration changes, and sequences too short for one triplet are dropped.
Every dropped frame is counted under its reason in the :class:`BagReport`.
"""

from __future__ import annotations

import bisect
import functools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mds_core.config import BagConfig
from mds_core.data.dataset import change_thumbnail, thumbnail_change
from mds_core.data.rosbag.cache import FrameCache
from mds_core.data.rosbag.camera import TrainingCamera, is_rectified_topic, training_camera
from mds_core.data.rosbag.decode import Calibration, FrameDecodeError, decode_for_size, stamp_ns
from mds_core.data.rosbag.reader import BagReader
from mds_core.data.rosbag.sequence import BagSequence
from mds_core.data.rosbag.topics import choose_camera_info_topic, choose_image_topic
from mds_core.data.sequence_folder import DataError

LOG = logging.getLogger(__name__)

PROGRESS_EVERY = 30.0  # seconds between progress lines while a bag is prepared

DROP_ORDER = "stamp not after the previous frame's (duplicate or out of order)"
DROP_RATE = "skipped to reach data.bag.target_rate"
DROP_STATIONARY = "stationary: camera not moving (data.bag.stationary_threshold)"
DROP_SHORT = "in a stretch too short for a triplet (gaps over data.bag.max_gap)"


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """ROS 2 message definitions (Image, CompressedImage, CameraInfo are the same in every release)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


@dataclass
class BagReport:
    """What became of a bag's image messages; ``dropped`` maps a reason to a frame count."""

    path: str
    image_topic: str = ""
    camera_info_topic: str | None = None
    image_messages: int = 0
    declared_images: int | None = None
    camera_infos: int = 0
    bad_camera_infos: int = 0
    zero_stamps: int = 0
    dropped: Counter = field(default_factory=Counter)
    stationary_stretches: int = 0
    stationary_kept: int = 0  # stationary frames kept (data.bag.stationary_keep per stretch)
    longest_stationary_s: float = 0.0
    sequences: int = 0
    frames: int = 0
    decoded: int = 0
    camera: list[str] = field(default_factory=list)
    pairing: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def damaged(self) -> bool:
        return bool(self.notes)

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        rate = self.image_messages / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"bag {self.path}: {self.image_messages} image messages on {self.image_topic}, "
            f"{self.decoded} decoded in {self.seconds:.1f} s ({rate:.0f} messages/s)",
            f"  kept {self.frames} frames in {self.sequences} sequence(s); dropped {sum(self.dropped.values())}",
        ]
        for reason, count in self.dropped.most_common():
            out.append(f"    {count:6d}  {reason}")
        if self.stationary_stretches:
            out.append(f"  {self.stationary_stretches} stationary stretch(es), longest {self.longest_stationary_s:.1f} s; "
                       f"{self.stationary_kept} of their frames kept (data.bag.stationary_keep per stretch)")
        if self.zero_stamps:
            out.append(f"  {self.zero_stamps} image(s) had a zero header stamp: the bag log time was used")
        for text in dict.fromkeys(self.camera):
            out.append(f"  intrinsics: {text}")
        if self.pairing:
            out.append(f"  camera info: {self.pairing}")
        if self.bad_camera_infos:
            out.append(f"  {self.bad_camera_infos} unreadable CameraInfo message(s) ignored")
        return out


@dataclass
class _Kept:
    stamp: int
    index: int
    native: tuple[int, int]
    run: int


class _StationaryRuns:
    """Counts stretches of consecutive stationary frames and the longest one's duration."""

    def __init__(self, report: BagReport):
        self.report = report
        self.start: int | None = None
        self.end = 0

    def add(self, reference_stamp: int, stamp: int) -> None:
        if self.start is None:
            self.start = reference_stamp
        self.end = stamp

    def close(self) -> None:
        if self.start is not None:
            self.report.stationary_stretches += 1
            self.report.longest_stationary_s = max(self.report.longest_stationary_s, (self.end - self.start) / 1e9)
            self.start = None


def _pair_calibrations(kept: list[_Kept], infos: list[tuple[int, Calibration]], report: BagReport) -> list[Calibration]:
    """The CameraInfo of each kept frame: same stamp, else nearest in time."""
    infos = sorted(infos, key=lambda item: item[0])
    stamps = [s for s, _ in infos]
    paired, exact, worst = [], 0, 0
    for frame in kept:
        j = bisect.bisect_left(stamps, frame.stamp)
        options = [k for k in (j - 1, j) if 0 <= k < len(stamps)]
        best = min(options, key=lambda k: abs(stamps[k] - frame.stamp))
        offset = abs(stamps[best] - frame.stamp)
        exact += offset == 0
        worst = max(worst, offset)
        paired.append(infos[best][1])
    nearest = len(kept) - exact
    report.pairing = (f"{report.camera_info_topic}: {exact} frame(s) paired by exact stamp"
                      + (f", {nearest} with the nearest CameraInfo (at most {worst / 1e6:.1f} ms away)" if nearest else ""))
    return paired


def prepare_bag(path: str | Path, bag: BagConfig, cache: FrameCache, min_frames: int) -> tuple[list[BagSequence], BagReport]:
    """Sequences of one bag (module docstring); frames are appended to ``cache``."""
    store = typestore()
    started = time.perf_counter()
    reader = BagReader(path)
    where = str(path)
    report = BagReport(path=where)
    report.image_topic = choose_image_topic(reader.topics, bag.image_topic, where)
    if bag.intrinsics is None:
        report.camera_info_topic = choose_camera_info_topic(reader.topics, report.image_topic, bag.camera_info_topic, where)
        declared = reader.topics[report.camera_info_topic].count if report.camera_info_topic else 0
        if report.camera_info_topic is None or declared == 0:
            what = "no CameraInfo topic" if report.camera_info_topic is None else f"no messages on {report.camera_info_topic}"
            raise DataError(f"{where}: {what}, so the intrinsics are unknown; give them with "
                            f"--intrinsics FX FY CX CY (data.bag.intrinsics, pixels of the bag's images)")
    height, width = cache.shape[:2]
    period = 1.0 / bag.target_rate if bag.target_rate > 0 else 0.0
    kept: list[_Kept] = []
    infos: list[tuple[int, Calibration]] = []
    distinct: dict[Calibration, Calibration] = {}
    runs = _StationaryRuns(report)
    last_stamp: int | None = None
    reference: tuple[int, np.ndarray] | None = None
    standing = 0  # stationary frames in a row so far
    run = -1
    topics = [report.image_topic] + ([report.camera_info_topic] if report.camera_info_topic else [])
    next_progress = started + PROGRESS_EVERY
    for raw in reader.messages(topics):
        if time.perf_counter() > next_progress:
            next_progress += PROGRESS_EVERY
            LOG.info("bag %s: %d image messages read, %d frames kept so far", where, report.image_messages, len(kept))
        if raw.topic == report.camera_info_topic:
            report.camera_infos += 1
            try:
                message = store.deserialize_cdr(raw.data, raw.msgtype)
                calibration = Calibration.from_message(message)
                calibration = distinct.setdefault(calibration, calibration)  # one object per calibration
                infos.append((stamp_ns(message) or raw.log_time, calibration))
            except Exception:
                report.bad_camera_infos += 1
            continue
        report.image_messages += 1
        try:
            message = store.deserialize_cdr(raw.data, raw.msgtype)
        except Exception as error:
            report.dropped[f"unreadable message ({type(error).__name__})"] += 1
            continue
        stamp = stamp_ns(message)
        if stamp == 0:
            stamp = raw.log_time
            report.zero_stamps += 1
        if last_stamp is not None and stamp <= last_stamp:
            report.dropped[DROP_ORDER] += 1
            continue
        last_stamp = stamp
        gap = None if reference is None else (stamp - reference[0]) / 1e9
        starts_run = gap is None or gap > bag.max_gap
        if not starts_run and period and gap < 0.9 * period:
            report.dropped[DROP_RATE] += 1
            continue
        try:
            rgb, native = decode_for_size(raw.msgtype, message, (width, height))
        except FrameDecodeError as error:
            report.dropped[f"undecodable image: {error}"] += 1
            continue
        report.decoded += 1
        if rgb.shape[:2] != (height, width):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        thumbnail = change_thumbnail(rgb)
        if (reference is not None and bag.stationary_threshold > 0
                and thumbnail_change(thumbnail, reference[1]) < bag.stationary_threshold):
            runs.add(reference[0], stamp)
            standing += 1
            if standing > bag.stationary_keep:
                report.dropped[DROP_STATIONARY] += 1
                continue
            report.stationary_kept += 1
        else:
            runs.close()
            standing = 0
        if starts_run:
            run += 1
        kept.append(_Kept(stamp, cache.append(rgb), native, run))
        reference = (stamp, thumbnail)
    runs.close()
    report.notes = list(dict.fromkeys(reader.notes))
    report.declared_images = reader.topics[report.image_topic].count

    if bag.intrinsics is None and kept and not infos:
        raise DataError(f"{where}: no readable CameraInfo on {report.camera_info_topic} "
                        f"({report.camera_infos} message(s), {report.bad_camera_infos} unreadable); "
                        f"give the intrinsics with --intrinsics FX FY CX CY")
    calibrations: list[Calibration | None] = (
        _pair_calibrations(kept, infos, report) if bag.intrinsics is None else [None] * len(kept))
    if bag.intrinsics is not None and len({k.native for k in kept}) > 1:
        sizes = ", ".join(f"{w}x{h}" for w, h in sorted({k.native for k in kept}))
        raise DataError(f"{where}: images of several sizes ({sizes}) but one set of --intrinsics")

    # split where the run, the size or the calibration changes; keep stretches long enough for a triplet
    sequences: list[BagSequence] = []
    name = Path(where).name or where
    rectified = is_rectified_topic(report.image_topic)
    cameras: dict[tuple, TrainingCamera] = {}  # one (undistortion map) per size and calibration
    start = 0
    for end in range(1, len(kept) + 1):
        if end < len(kept) and (kept[end].run, kept[end].native, calibrations[end]) == \
                (kept[start].run, kept[start].native, calibrations[start]):
            continue
        if end - start >= min_frames:
            key = (kept[start].native, calibrations[start])
            if key not in cameras:
                cameras[key] = training_camera(kept[start].native, (width, height), calibrations[start],
                                               bag.intrinsics, rectified, bag.undistort, where)
            camera = cameras[key]
            report.camera.append(camera.description)
            sequences.append(BagSequence(
                f"{name}#{len(sequences)}", cache, [k.index for k in kept[start:end]],
                [k.stamp for k in kept[start:end]], camera.matrix, camera.undistort))
        else:
            report.dropped[DROP_SHORT] += end - start
        start = end
    report.sequences = len(sequences)
    report.frames = sum(len(s) for s in sequences)
    report.seconds = time.perf_counter() - started
    return sequences, report


def load_bag_sequences(bag: BagConfig, height: int, width: int,
                       source_offsets: list[int]) -> tuple[list[BagSequence], list[BagReport], FrameCache]:
    """Sequences of every bag in ``bag.paths``, with one shared frame cache; logs each bag's report."""
    if not bag.paths:
        raise DataError("no bags given (--bag PATH ... or data.bag.paths)")
    lo, hi = min(min(source_offsets), 0), max(max(source_offsets), 0)
    cache = FrameCache(height, width, bag.cache_memory_mb, bag.cache_dir)
    sequences: list[BagSequence] = []
    reports: list[BagReport] = []
    for path in bag.paths:
        found, report = prepare_bag(path, bag, cache, hi - lo + 1)
        for note in report.notes:
            LOG.warning("bag %s: %s", path, note)
        if report.damaged:
            declared = (f" of the {report.declared_images} its index declares"
                        if report.declared_images and report.declared_images != report.image_messages else "")
            LOG.warning("bag %s is damaged: training on the %d image message(s) that were readable%s",
                        path, report.image_messages, declared)
        for line in report.lines():
            LOG.info("%s", line)
        sequences.extend(found)
        reports.append(report)
    cache.finish()
    LOG.info("frame cache: %s", cache.describe())
    if not sequences:
        reasons = "; ".join(
            f"{r.path}: {r.image_messages} images, " + ", ".join(f"{n} {why}" for why, n in r.dropped.most_common())
            for r in reports)
        raise DataError(f"no sequence of {hi - lo + 1} frames in the bags ({reasons})")
    return sequences, reports, cache
