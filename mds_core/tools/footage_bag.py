"""A rosbag2 bag from real footage (``mds bag-from-video``): a video, or any sequence the data
readers open, as ``sensor_msgs/Image`` (rgb8) and ``sensor_msgs/CameraInfo``, written by the same
writer and in the same layout as ``mds synth --format bag``
(:func:`mds_core.tools.synth.writers.write_frames_rosbag`):

* ``<prefix>/image_raw``: Image, rgb8, header stamp = the frame's time;
* ``<prefix>/camera_info``: CameraInfo with the sequence's ``K``, plumb_bob, zero distortion,
  ``P = [K | 0]``, same stamp;
* where the source has ground truth: ``<prefix>/depth_gt`` (32FC1, metres, 0 = none: KITTI's lidar)
  and ``<prefix>/motion_gt`` (mono8, 1 = moving: DAVIS's annotations), same stamp, so that
  ``mds ros-demo --bag`` can score the node's outputs against them.

Frame times: the sequence's own (a video's frame rate, KITTI's ``times.txt``, DAVIS's 24 fps), or
:data:`DEFAULT_RATE` frames per second when it has none, from :data:`START_TIME_NS` (the start time of
``mds synth``'s bags: a zero stamp would read as "no stamp"). The bag's metadata holds
``mds_footage_source`` (JSON: the source, the sequence, the frame ids kept).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from mds_core.data.sequence_folder import DataError, FrameSequence
from mds_core.tools.synth.writers import write_frames_rosbag

#: Frame 0's stamp (ns since the epoch), as in ``mds synth``'s bags.
START_TIME_NS = 1_700_000_000_000_000_000
#: Ground-truth topics under the prefix, written where the source has them.
DEPTH_TOPIC, MOTION_TOPIC = "depth_gt", "motion_gt"
#: Frames per second of a sequence that does not say when its frames were taken.
DEFAULT_RATE = 10.0


@dataclass
class FootageFrame:
    """One frame to write (a :class:`~mds_core.tools.synth.writers.BagFrame`)."""

    index: int
    timestamp_ns: int
    image: np.ndarray
    intrinsics: np.ndarray
    depth: np.ndarray | None = None
    motion: np.ndarray | None = None


def footage_frames(sequence: FrameSequence) -> Iterator[FootageFrame]:
    """The frames of ``sequence`` with their stamps (module docstring), read one at a time."""
    matrix, (width, height) = sequence.intrinsics()
    times = getattr(sequence, "timestamps", lambda: None)()
    if times is None:
        times = [i / DEFAULT_RATE for i in range(len(sequence))]
    first = times[0] if len(times) else 0.0
    for index in range(len(sequence)):
        image = sequence.image(index)
        if image.shape[:2] != (height, width):
            raise DataError(f"{sequence.name} frame {sequence.frame_id(index)} is {image.shape[1]}x{image.shape[0]}, "
                            f"its calibration is for {width}x{height}")
        stamp = START_TIME_NS + int(round((times[index] - first) * 1e9))
        yield FootageFrame(index=index, timestamp_ns=stamp, image=image, intrinsics=matrix,
                           depth=sequence.depth(index), motion=sequence.motion(index))


def write_footage_bag(sequence: FrameSequence, output: str | Path, *, source: str = "",
                      storage: Literal["mcap", "sqlite3"] = "mcap", topic_prefix: str = "/camera",
                      frame_id: str = "camera_optical_frame",
                      on_frame: Callable[[FootageFrame], None] | None = None) -> Path:
    """Write ``sequence`` as the bag directory ``output`` (must not exist; module docstring)."""
    prefix = "/" + topic_prefix.strip("/") if topic_prefix.strip("/") else ""
    metadata = {"source": source, "sequence": sequence.name,
                "frame_ids": [sequence.frame_id(i) for i in range(len(sequence))]}
    has_depth = len(sequence) > 0 and sequence.depth(0) is not None
    has_motion = len(sequence) > 0 and sequence.motion(0) is not None
    return write_frames_rosbag(
        Path(output), footage_frames(sequence), storage=storage, image_topic=f"{prefix}/image_raw",
        info_topic=f"{prefix}/camera_info", frame_id=frame_id, on_frame=on_frame,
        custom_data={"mds_footage_source": json.dumps(metadata)},
        depth_topic=f"{prefix}/{DEPTH_TOPIC}" if has_depth else None,
        motion_topic=f"{prefix}/{MOTION_TOPIC}" if has_motion else None,
    )
