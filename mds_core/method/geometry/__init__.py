"""Camera geometry: pinhole back-projection/projection (eqs. 4-5) and SE(3) algebra."""

from mds_core.method.geometry.camera import (
    backproject,
    pixel_grid,
    pixels_to_sampling_grid,
    project,
    scale_intrinsics,
)
from mds_core.method.geometry.se3 import (
    axis_angle_to_matrix,
    invert_transform,
    pose_vector_to_transform,
    transform_points,
)

__all__ = [
    "axis_angle_to_matrix",
    "backproject",
    "invert_transform",
    "pixel_grid",
    "pixels_to_sampling_grid",
    "pose_vector_to_transform",
    "project",
    "scale_intrinsics",
    "transform_points",
]
