"""The regularisers of the scene-flow motion model (Dynamo-Depth; docs/dynamo-depth-notes.md).

Each is a function of one scale's tensors; the objective weights them (``loss.*_weight``),
divides them by ``2^s`` and by the number of source frames, and ramps the motion terms in.

* :func:`flow_consistency`: where the motion mask is low, the complete flow should be the rigid
  flow of the ego-motion: ``mean(valid (1 - sg(M)) |C - E|)``, ``valid`` = disparity above a
  threshold (near points; far away rotation dominates the rigid flow and the term is unreliable).
* :func:`mask_sparsity`: binary cross-entropy toward "static" of the mask logits on the pixels
  whose rigid and complete projections agree better than the batch's mean squared distance (in
  normalised image coordinates, both detached): what the ego-motion explains is not moving.
* :func:`flow_smoothness` and :func:`mask_smoothness`: edge-aware smoothness of the complete flow
  and of the mask.
* :func:`ground_plane_term`: points must not lie below the ground. A plane ``y = w1 x + w2 z + w3``
  (camera y pointing down) is fitted by RANSAC to the back-projected bottom rows of each image,
  moved down by the inlier tolerance, and every pixel whose disparity is below the disparity of
  the plane along its ray (farther than the ground it looks at) is penalised by the difference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mds_core.method.losses.smoothness import edge_aware_smoothness
from mds_core.method.networks import disparity_to_depth
from mds_core.method.oracle import depth_to_disparity


def flow_consistency(complete_flow: Tensor, rigid_flow: Tensor, mask: Tensor, disparity: Tensor,
                     min_disparity: float = 0.03) -> Tensor:
    """``mean(valid (1 - sg(M)) |C - E|)`` over ``(B, 3, H, W)`` flows, ``(B, 1, H, W)`` mask and sigmoid disparity."""
    valid = (disparity.detach() > min_disparity).to(complete_flow.dtype)
    return (valid * (1.0 - mask.detach()) * (complete_flow - rigid_flow).abs()).mean()


def normalised_coordinates(pixels: Tensor, height: int, width: int) -> Tensor:
    """``(..., 2)`` pixel coordinates -> ``[-1, 1]`` (``u / (W - 1)``, as the sampling grid)."""
    scale = pixels.new_tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)])
    return pixels * scale - 1.0


def mask_sparsity(mask_logits: Tensor, rigid_pixels: Tensor, complete_pixels: Tensor) -> Tensor:
    """BCE toward 0 of ``(B, 1, H, W)`` logits where the ``(B, H, W, 2)`` rigid and complete source
    pixels are closer than their mean squared distance over the batch; 0 if no pixel is."""
    height, width = mask_logits.shape[-2:]
    gap = (normalised_coordinates(rigid_pixels.detach(), height, width)
           - normalised_coordinates(complete_pixels.detach(), height, width)).square().sum(dim=-1)
    static = gap < gap.mean()
    if not static.any():
        return mask_logits.new_zeros(())
    logits = mask_logits[:, 0][static]
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def flow_smoothness(complete_flow: Tensor, image: Tensor) -> Tensor:
    """Edge-aware smoothness of the complete flow (not normalised) at the image's scale."""
    return edge_aware_smoothness(complete_flow, image)


def mask_smoothness(mask: Tensor, image: Tensor) -> Tensor:
    """Edge-aware smoothness of the motion mask (probabilities)."""
    return edge_aware_smoothness(mask, image)


def fit_ground_plane(points: Tensor, bottom_fraction: float = 0.4, iterations: int = 100,
                     sample_size: int = 5, tolerance: float = 0.005,
                     generator: torch.Generator | None = None) -> Tensor:
    """RANSAC fit of ``y = w1 x + w2 z + w3`` to the bottom rows of ``(B, 3, H, W)`` camera points.

    Each of ``iterations`` hypotheses is the least-squares plane through ``sample_size`` random
    points of the image; the one with the most points within ``tolerance`` (in y) wins. Returns
    ``(B, 3)`` plane parameters ``(w1, w2, w3)``, detached.
    """
    points = points.detach().double()
    batch, _, height, width = points.shape
    rows = max(1, int(bottom_fraction * height))
    ground = points[:, :, height - rows:].flatten(2).transpose(1, 2)  # (B, N, 3)
    count = ground.shape[1]
    index = torch.randint(count, (batch, iterations, sample_size), generator=generator, device="cpu").to(points.device)
    chosen = torch.gather(ground[:, None].expand(-1, iterations, -1, -1), 2, index[..., None].expand(-1, -1, -1, 3))
    design = torch.stack([chosen[..., 0], chosen[..., 2], torch.ones_like(chosen[..., 0])], dim=-1)  # (B, I, S, 3)
    normal = design.transpose(-1, -2) @ design + 1e-6 * torch.eye(3, dtype=design.dtype, device=design.device)
    planes = torch.linalg.solve(normal, design.transpose(-1, -2) @ chosen[..., 1:2])[..., 0]  # (B, I, 3)
    everything = torch.stack([ground[..., 0], ground[..., 2], torch.ones_like(ground[..., 0])], dim=-1)  # (B, N, 3)
    residual = (everything @ planes.transpose(1, 2) - ground[..., 1:2]).abs()  # (B, N, I)
    best = (residual < tolerance).sum(dim=1).argmax(dim=1)  # (B,)
    return planes[torch.arange(batch, device=points.device), best].to(torch.float32)


def ground_plane_term(disparity: Tensor, inv_intrinsics: Tensor, min_depth: float, max_depth: float,
                      bottom_fraction: float = 0.4, iterations: int = 100, sample_size: int = 5,
                      tolerance: float = 0.005, generator: torch.Generator | None = None) -> Tensor:
    """``mean(relu(disp_ground - disp))`` for ``(B, 1, H, W)`` sigmoid disparity at its own scale
    (``inv_intrinsics`` of that scale): penalises points predicted beyond the ground along their ray."""
    from mds_core.method.geometry import backproject, pixel_grid

    depth = disparity_to_depth(disparity, min_depth, max_depth)
    planes = fit_ground_plane(backproject(depth, inv_intrinsics), bottom_fraction, iterations, sample_size,
                              tolerance, generator)
    planes = planes.to(disparity.dtype)
    w1, w2, w3 = (planes[:, i, None, None] for i in range(3))
    w3 = w3 + tolerance  # the plane moved down a little (y points down): only clearly lower points count
    height, width = disparity.shape[-2:]
    rays = torch.einsum("bij,jhw->bihw", inv_intrinsics.to(disparity.dtype),
                        pixel_grid(height, width, device=disparity.device, dtype=disparity.dtype))
    ground_depth = w3 / (rays[:, 1] - w1 * rays[:, 0] - w2 * rays[:, 2])  # where the ray meets the plane
    seen = (ground_depth > 0) & (ground_depth < max_depth)  # rays that never meet it are left alone
    ground_disparity = depth_to_disparity(ground_depth.clamp(min_depth, max_depth), min_depth, max_depth)
    below = torch.relu(ground_disparity[:, None] - disparity) * seen[:, None]
    return below.mean()
