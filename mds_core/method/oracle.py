"""Oracle rung "depth": ground-truth depth in place of the depth network.

With ``model.depth_source = "ground_truth"`` the model does not predict depth: the sample's
ground-truth depth is used for the warp (eqs. 4-7), so only the pose+mask network learns and the
decomposition half can be judged on its own (docs/decomposition-ladder.md).

Conventions:

* Ground truth comes at its native size (``Batch.depth``, metres, 0 = none) and is resized to the
  model resolution with nearest-neighbour sampling, so depth is never averaged across an object
  boundary.
* Invalid pixels (``<= 0`` or not finite: sky, unlabelled) are set to ``max_depth``: the sky is
  treated as the farthest representable surface, which moves (almost) only with the camera's
  rotation. Valid depth is clamped to ``[min_depth, max_depth]``.
* The warp uses this depth times ``model.ground_truth_depth_scale`` (a common scale of depth and
  translation leaves every warp unchanged; see :class:`mds_core.config.ModelConfig`).
* The depth channel of the pose+mask input is the sigmoid disparity that the depth network would
  have had to output for the (unscaled, clamped) ground truth: the inverse of
  :func:`mds_core.method.networks.disparity_to_depth`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def depth_to_disparity(depth: Tensor, min_depth: float, max_depth: float) -> Tensor:
    """Inverse of ``disparity_to_depth``: ``s = (1/depth - 1/max) / (1/min - 1/max)``."""
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    return (1.0 / depth - min_disp) / (max_disp - min_disp)


def ground_truth_depth(depths: list[Tensor], height: int, width: int, min_depth: float, max_depth: float) -> Tensor:
    """Stack native-size ``(1, Hg, Wg)`` ground-truth depths into ``(B, 1, height, width)`` metres.

    Resized with nearest-neighbour sampling; invalid pixels become ``max_depth``; the rest is
    clamped to ``[min_depth, max_depth]``.
    """
    resized = []
    for depth in depths:
        depth = depth.float()
        if depth.dim() == 2:
            depth = depth[None]
        if depth.shape[-2:] != (height, width):
            depth = F.interpolate(depth[None], size=(height, width), mode="nearest")[0]
        valid = torch.isfinite(depth) & (depth > 0)
        depth = torch.where(valid, depth, torch.full_like(depth, max_depth))
        resized.append(depth.clamp(min_depth, max_depth))
    return torch.stack(resized)
