"""Deterministic synthetic dynamic street scenes with exact ground truth.

Public API:

* :class:`SynthConfig` - all parameters (resolution, frames, fps, seed, traffic, ...).
* :func:`generate_sequence` - iterator of :class:`SynthFrame` (image, depth, motion and
  instance labels, camera/object poses, intrinsics, timestamp).
* :func:`write_sequence_folder` - the project's sequence-folder format.
* :func:`write_rosbag` - a rosbag2 (MCAP or sqlite3) with Image + CameraInfo (+ GT depth).
* :func:`write_train_heldout` - training and held-out sequence folders with disjoint seeds.

World frame: Z up, road plane Z = 0, X along the road at its start (see
:mod:`mds_core.tools.synth.scene`); camera frame: OpenCV (x right, y down, z forward).
"""

from mds_core.tools.synth.config import SynthConfig
from mds_core.tools.synth.frame import (
    MOTION_MOVING,
    MOTION_PARKED,
    MOTION_STATIC,
    MOTION_UNLABELLED,
    SynthFrame,
)
from mds_core.tools.synth.scene import Scene
from mds_core.tools.synth.sequence import generate_sequence
from mds_core.tools.synth.splits import TrainHeldoutSplit, write_train_heldout
from mds_core.tools.synth.writers import write_rosbag, write_sequence_folder

__all__ = [
    "MOTION_MOVING",
    "MOTION_PARKED",
    "MOTION_STATIC",
    "MOTION_UNLABELLED",
    "Scene",
    "SynthConfig",
    "SynthFrame",
    "TrainHeldoutSplit",
    "generate_sequence",
    "write_rosbag",
    "write_sequence_folder",
    "write_train_heldout",
]
