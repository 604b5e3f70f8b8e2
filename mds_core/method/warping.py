"""View synthesis by inverse warping (paper section 3.3, eq. 7).

Every target pixel is back-projected with the target depth (eq. 4), moved into the source
camera by a *motion model* (eq. 6 for MonoDepthSeg), projected into the source image
(eq. 5), and the SOURCE image is bilinearly sampled there: ``I_hat_s(p) = I_s(p')``.

A motion model is anything with ``transform_points((..., B, 3, H, W)) -> (..., B, 3, H, W)``:
:class:`mds_core.method.decomposition.ComponentMotion` (K masks and K rigid motions) is one; a
per-pixel scene-flow model such as Dynamo-Depth's fits the same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from mds_core.method.geometry import backproject, pixels_to_sampling_grid, project


class MotionModel(Protocol):
    """Maps 3D points of the target camera frame into a source camera frame."""

    def transform_points(self, points: Tensor) -> Tensor: ...


@dataclass
class WarpResult:
    """The source image resampled onto the target grid, and where it was sampled."""

    image: Tensor  # (B, C, H, W) warped source image I_hat_s
    pixels: Tensor  # (B, H, W, 2) source pixel coordinates p' of each target pixel
    source_points: Tensor  # (B, 3, H, W) target points moved into the source frame (x')


def sample_source(source: Tensor, pixels: Tensor) -> Tensor:
    """Eq. (7): bilinear sampling of the source image at continuous pixel coordinates.

    ``grid_sample`` with ``align_corners=True`` (matching the ``u / (W - 1)`` normalisation)
    and ``padding_mode="border"``, as in Monodepth2. ``source`` is ``(..., B, C, H, W)`` and
    ``pixels`` ``(..., B, H', W', 2)``; their leading dimensions broadcast, and every image is
    sampled in one ``grid_sample`` call.
    """
    height, width = source.shape[-2:]
    grid = pixels_to_sampling_grid(pixels, height, width).to(source.dtype)
    leading = torch.broadcast_shapes(source.shape[:-3], grid.shape[:-3])
    source = source.expand(*leading, *source.shape[-3:]).reshape(-1, *source.shape[-3:])
    sampled = F.grid_sample(source, grid.expand(*leading, *grid.shape[-3:]).reshape(-1, *grid.shape[-3:]),
                            mode="bilinear", padding_mode="border", align_corners=True)
    return sampled.view(*leading, *sampled.shape[-3:])


def warp_source(
    source: Tensor,
    target_depth: Tensor,
    intrinsics: Tensor,
    motion: MotionModel,
    inv_intrinsics: Tensor | None = None,
) -> WarpResult:
    """Synthesise the target view from ``source`` (``(B, C, H, W)``).

    Args:
        source: the source image I_s.
        target_depth: ``(B, 1, H, W)`` depth of the target frame.
        intrinsics: ``(B, 3, 3)`` camera matrix at this resolution (shared by both frames).
        motion: a :class:`MotionModel` (target frame -> source frame).
        inv_intrinsics: optional precomputed inverse of ``intrinsics``.
    """
    if inv_intrinsics is None:
        inv_intrinsics = torch.linalg.inv(intrinsics)
    points = backproject(target_depth, inv_intrinsics)
    moved = motion.transform_points(points)
    pixels = project(moved, intrinsics)
    return WarpResult(image=sample_source(source, pixels), pixels=pixels, source_points=moved)
