"""REP 105 frames of the node's odometry: the robot's base frame, the static camera-to-base
transform, and the TF messages of ``odom -> base`` and ``base -> camera``.

The ego-motion comes in the camera's frame (optical: z forward, x right, y down). With a
``base_frame`` the node reports the base's motion instead: a rigid motion ``M_c`` of the camera
(``X_t = M_c X_{t-1}`` in camera coordinates) is ``M_b = B M_c B^-1`` in base coordinates, with
``B = base_from_camera`` fixed by the mounting. ``odom`` is where the base was at the first frame.
"""

from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import TransformStamped

from mds_ros.conversions import pose_msgs

# an optical frame (z forward, x right, y down) at the base origin looking along the base's x axis
OPTICAL_IN_BASE = (0.0, 0.0, 0.0, -math.pi / 2, 0.0, -math.pi / 2)


def transform_from_xyz_rpy(values) -> np.ndarray:
    """``(4, 4)`` transform of ``[x, y, z, roll, pitch, yaw]`` (``R = Rz(yaw) Ry(pitch) Rx(roll)``, the
    convention of ``static_transform_publisher`` and URDF)."""
    x, y, z, roll, pitch, yaw = (float(v) for v in values)
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw), \
        math.sin(yaw)
    transform = np.eye(4)
    transform[:3, :3] = [[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                         [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                         [-sp, cp * sr, cp * cr]]
    transform[:3, 3] = (x, y, z)
    return transform


def motion_in_base(motion: np.ndarray, base_from_camera: np.ndarray) -> np.ndarray:
    """A rigid motion of the camera (camera coordinates) as the same motion in base coordinates."""
    return base_from_camera @ np.asarray(motion, dtype=np.float64) @ np.linalg.inv(base_from_camera)


def transform_msg(transform: np.ndarray, stamp, parent: str, child: str) -> TransformStamped:
    """``TransformStamped`` placing ``child`` in ``parent`` (``transform`` is ``parent_from_child``).

    Raises:
        ValueError: a non-finite transform (as :func:`~mds_ros.conversions.pose_msgs`).
    """
    message = TransformStamped()
    message.header.stamp = stamp
    message.header.frame_id, message.child_frame_id = parent, child
    pose = pose_msgs(np.asarray(transform)[None])[0]
    message.transform.translation.x, message.transform.translation.y, message.transform.translation.z = \
        pose.position.x, pose.position.y, pose.position.z
    message.transform.rotation = pose.orientation
    return message


class OdometryFrames:
    """Which frames the odometry is reported in, from the node's parameters."""

    def __init__(self, odom_frame: str, base_frame: str, camera_in_base):
        self.odom_frame = odom_frame
        self.base_frame = base_frame
        self.base_from_camera = transform_from_xyz_rpy(camera_in_base) if base_frame else None

    def child(self, camera_frame: str) -> str:
        """The frame whose pose the odometry reports: the base frame, or the camera's."""
        return self.base_frame or camera_frame

    def motion(self, camera_motion: np.ndarray) -> np.ndarray:
        """The ego-motion in the reported frame's coordinates."""
        if self.base_from_camera is None:
            return np.asarray(camera_motion, dtype=np.float64)
        return motion_in_base(camera_motion, self.base_from_camera)

    def camera_tf(self, stamp, camera_frame: str) -> TransformStamped | None:
        """The static ``base -> camera`` transform (None without a base frame)."""
        if self.base_from_camera is None:
            return None
        return transform_msg(self.base_from_camera, stamp, self.base_frame, camera_frame)
