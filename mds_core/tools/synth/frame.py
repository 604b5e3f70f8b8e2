"""One rendered frame with its exact ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mds_core.motion_labels import MOTION_MOVING, MOTION_PARKED, MOTION_STATIC, MOTION_UNLABELLED

__all__ = ["MOTION_MOVING", "MOTION_PARKED", "MOTION_STATIC", "MOTION_UNLABELLED", "SynthFrame"]


@dataclass
class SynthFrame:
    """A synthetic frame and its ground truth.

    Conventions:

    * ``image``: ``(H, W, 3)`` uint8 **RGB**.
    * ``depth``: ``(H, W)`` float32, metres along the optical axis (camera z), 0 where the
      ray hits nothing (sky).
    * ``motion``: ``(H, W)`` uint8, :data:`MOTION_STATIC` / :data:`MOTION_MOVING` /
      :data:`MOTION_PARKED` (sky is 0).
    * ``instance``: ``(H, W)`` int32, 0 for background and sky, else the object id (>= 1).
    * ``camera_pose``: 4x4 ``world_from_camera``, camera frame = OpenCV (x right, y down,
      z forward); world frame: Z up, see :mod:`mds_core.tools.synth.scene`.
    * ``object_poses[id]``: 4x4 ``world_from_object`` (box centre, x forward, y left, z up);
      ``object_sizes[id]`` the full box extents ``(length, width, height)`` along x, y, z.
    * ``intrinsics``: 3x3 ``K``; pixel centres at integer coordinates.
    * ``timestamp_ns``: integer nanoseconds since the epoch.
    """

    index: int
    timestamp_ns: int
    image: np.ndarray
    depth: np.ndarray
    motion: np.ndarray
    instance: np.ndarray
    camera_pose: np.ndarray
    intrinsics: np.ndarray
    object_poses: dict[int, np.ndarray] = field(default_factory=dict)
    object_moving: dict[int, bool] = field(default_factory=dict)
    object_sizes: dict[int, np.ndarray] = field(default_factory=dict)
    object_kinds: dict[int, str] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
