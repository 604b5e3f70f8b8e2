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

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from mds_core.config import SceneFlowLossConfig
from mds_core.method.geometry import backproject, pixel_grid, project, scale_intrinsics, transform_points
from mds_core.method.losses.smoothness import edge_aware_smoothness
from mds_core.method.networks import disparity_to_depth
from mds_core.method.networks.layers import resize_bilinear
from mds_core.method.oracle import depth_to_disparity

if TYPE_CHECKING:
    from mds_core.method.dynamo_depth import SceneFlowSource


def flow_consistency(residual_flow: Tensor, mask: Tensor, disparity: Tensor, min_disparity: float = 0.03) -> Tensor:
    """``mean(valid (1 - sg(M)) |C - E|)`` over the ``(B, 3, H, W)`` residual flow ``C - E``, the
    ``(B, 1, H, W)`` mask and sigmoid disparity."""
    valid = (disparity.detach() > min_disparity).to(residual_flow.dtype)
    return (valid * (1.0 - mask.detach()) * residual_flow.abs()).mean()


def normalised_coordinates(pixels: Tensor, height: int, width: int) -> Tensor:
    """``(..., 2)`` pixel coordinates -> ``[-1, 1]`` (``u / (W - 1)``, as the sampling grid)."""
    scale = pixels.new_tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)])
    return pixels * scale - 1.0


def mask_sparsity(mask_logits: Tensor, rigid_pixels: Tensor, complete_pixels: Tensor, height: int, width: int) -> Tensor:
    """BCE toward 0 of ``(B, 1, h, w)`` logits where the ``(B, h, w, 2)`` rigid and complete source
    pixels (in pixels of a ``width`` x ``height`` image) are closer than their mean squared distance
    over the batch, in normalised image coordinates; 0 if no pixel is."""
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


@dataclass
class SceneFlowTerms:
    """The scene-flow regularisers of one step, each summed over scales (``/ 2^s``) and sources
    (``/ S``) and averaged over scales like the photometric term, before their weights."""

    flow_smoothness: Tensor
    flow_consistency: Tensor
    mask_sparsity: Tensor
    mask_smoothness: Tensor
    ground: Tensor

    def weighted(self, config: SceneFlowLossConfig, step: int | None) -> Tensor:
        """The weighted sum; the four motion terms ramped in over ``config.ramp_steps`` steps."""
        ramp = 1.0 if step is None or config.ramp_steps == 0 else min(1.0, step / config.ramp_steps)
        motion = (config.flow_smoothness_weight * self.flow_smoothness
                  + config.flow_consistency_weight * self.flow_consistency
                  + config.mask_sparsity_weight * self.mask_sparsity
                  + config.mask_smoothness_weight * self.mask_smoothness)
        return ramp * motion + config.ground_weight * self.ground

    def scalars(self) -> dict[str, float]:
        return {f"scene_flow/{f.name}": float(getattr(self, f.name).detach()) for f in fields(self)}


def scene_flow_terms(sources: list[SceneFlowSource], disparities: list[Tensor], target: Tensor, points: Tensor,
                     intrinsics: Tensor, config: SceneFlowLossConfig, min_depth: float, max_depth: float,
                     with_ground: bool) -> SceneFlowTerms:
    """The regularisers over every scale ``s`` and source: ``disparities[s]`` ``(B, 1, H/2^s, W/2^s)``,
    ``points[s]`` ``(B, 3, H, W)`` back-projected with scale ``s``'s upsampled depth, ``target`` the
    full-resolution target image. Flow terms need the flow stage, mask terms the mask stage; the
    ground term (``with_ground``: the depth network is being trained) needs the mask stage too."""
    zero = target.new_zeros(())
    terms = dict.fromkeys(("flow_smoothness", "flow_consistency", "mask_sparsity", "mask_smoothness", "ground"), zero)
    height, width = target.shape[-2:]
    num_scales, num_sources = len(disparities), len(sources)
    for scale, disparity in enumerate(disparities):
        size = disparity.shape[-2:]
        image = F.interpolate(target, size=size, mode="area") if size != (height, width) else target
        weight = 1.0 / (2**scale * num_scales)
        masked = False
        for source in sources:
            if source.complete_flow is None:
                continue
            terms["flow_smoothness"] = terms["flow_smoothness"] + weight / num_sources * flow_smoothness(
                source.complete_flow[scale], image)
            if source.mask_logits is None:
                continue
            masked = True
            motion = source.at_scale(scale)
            rigid = transform_points(motion.ego, points[scale])
            residual = resize_bilinear(motion.complete_flow - (rigid - points[scale]), size)
            logits = source.mask_logits[scale]
            mask = torch.sigmoid(logits)
            terms["flow_consistency"] = terms["flow_consistency"] + weight / num_sources * flow_consistency(
                residual, mask, disparity, config.consistency_min_disparity)
            rigid_pixels = project(rigid.detach(), intrinsics)
            complete_pixels = project((points[scale] + motion.complete_flow).detach(), intrinsics)
            terms["mask_sparsity"] = terms["mask_sparsity"] + weight / num_sources * mask_sparsity(
                logits, _resize_pixels(rigid_pixels, size), _resize_pixels(complete_pixels, size), height, width)
            terms["mask_smoothness"] = terms["mask_smoothness"] + weight / num_sources * mask_smoothness(mask, image)
        if with_ground and masked and config.ground_weight > 0:
            scaled = scale_intrinsics(intrinsics, size[1] / width, size[0] / height)
            terms["ground"] = terms["ground"] + weight * ground_plane_term(
                disparity, torch.linalg.inv(scaled), min_depth, max_depth, config.ground_rows,
                tolerance=config.ground_tolerance)
    return SceneFlowTerms(**terms)


def _resize_pixels(pixels: Tensor, size: tuple[int, int]) -> Tensor:
    """``(B, H, W, 2)`` pixel coordinates sampled at ``size`` (their values stay full-resolution pixels)."""
    return resize_bilinear(pixels.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1)
