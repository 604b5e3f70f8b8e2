"""Pinhole camera model: the paper's eq. (4) (back-projection) and eq. (5) (projection).

Conventions (Monodepth2, see ``shared/notes/method.md``):

* pixel centres are the integer coordinates ``u = 0..W-1``, ``v = 0..H-1``;
* camera frame is OpenCV's: x right, y down, z forward (depth is z);
* projected pixels are normalised to ``[-1, 1]`` with ``u / (W - 1)``, which is what
  :func:`torch.nn.functional.grid_sample` expects with ``align_corners=True``.

Nothing here caches a batch size: every buffer is built from the tensors it is given.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

PROJECTION_EPS = 1e-7


def pixel_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> Tensor:
    """Homogeneous pixel coordinates ``[u, v, 1]`` as a ``(3, H, W)`` tensor."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([u, v, torch.ones_like(u)], dim=0)


def backproject(depth: Tensor, inv_intrinsics: Tensor) -> Tensor:
    """Eq. (4): ``x = D(p) K^-1 p`` for every pixel ``p``.

    Args:
        depth: ``(B, 1, H, W)`` depth along the optical axis, or ``(..., B, 1, H, W)`` for several
            depth maps of the same cameras (e.g. one per scale), which share the rays ``K^-1 p``.
        inv_intrinsics: ``(B, 3, 3)`` inverse camera matrices.

    Returns:
        ``(..., B, 3, H, W)`` points in the camera frame.
    """
    if depth.dim() < 4 or depth.shape[-3] != 1:
        raise ValueError(f"depth must be (..., B, 1, H, W), got {tuple(depth.shape)}")
    height, width = depth.shape[-2:]
    pixels = pixel_grid(height, width, device=depth.device, dtype=depth.dtype)
    rays = torch.einsum("bij,jhw->bihw", inv_intrinsics.to(depth.dtype), pixels)
    return rays * depth


def project(points: Tensor, intrinsics: Tensor, eps: float = PROJECTION_EPS) -> Tensor:
    """Eq. (5), second half: ``p' = K x'`` followed by the perspective division.

    Args:
        points: ``(..., B, 3, H, W)`` points in the frame of the camera to project into.
        intrinsics: ``(B, 3, 3)`` camera matrices.

    Returns:
        ``(..., B, H, W, 2)`` pixel coordinates ``(u, v)`` in pixel units.
    """
    homogeneous = torch.einsum("bij,...bjhw->...bihw", intrinsics.to(points.dtype), points)
    uv = homogeneous[..., :2, :, :] / (homogeneous[..., 2:3, :, :] + eps)
    return uv.movedim(-3, -1)


def pixels_to_sampling_grid(pixels: Tensor, height: int, width: int) -> Tensor:
    """Map pixel coordinates to ``[-1, 1]`` for ``grid_sample(..., align_corners=True)``."""
    scale = pixels.new_tensor([width - 1, height - 1])
    return pixels / scale * 2.0 - 1.0


def scale_intrinsics(intrinsics: Tensor, scale_x: float, scale_y: float) -> Tensor:
    """Intrinsics of an image resized by ``(scale_x, scale_y)`` (Monodepth2 convention).

    Rows 0 and 1 of K (fx, cx and fy, cy) scale with the image size, as when KITTI's
    size-normalised intrinsics are multiplied by the training resolution.
    """
    scaled = intrinsics.clone()
    scaled[..., 0, :] = scaled[..., 0, :] * scale_x
    scaled[..., 1, :] = scaled[..., 1, :] * scale_y
    return scaled


def inverse_camera_matrix(intrinsics: np.ndarray) -> np.ndarray:
    """``K^-1`` of a camera matrix ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in closed form (float64).

    For the per-frame work of a node: a general 3x3 inverse enters LAPACK, whose code is out of the
    caches right after the networks (60 us there against 2 us in closed form).
    """
    (fx, s, cx), (_, fy, cy), _ = np.asarray(intrinsics, dtype=np.float64).tolist()
    return np.array([[1.0 / fx, -s / (fx * fy), (s * cy - cx * fy) / (fx * fy)],
                     [0.0, 1.0 / fy, -cy / fy],
                     [0.0, 0.0, 1.0]])
