"""The self-supervised objective (paper eq. 9) over Monodepth2's four scales.

For each scale s the disparity is upsampled (bilinear) to the input resolution, turned into
depth, and each SOURCE image is warped onto the target with that depth and the source's
motion model; the photometric loss is always computed at full resolution on the clean
(un-augmented) images. The smoothness term uses the disparity at its own scale and the image
resized to that scale, weighted ``1e-3 / 2^s``. The total is averaged over scales. With the
"smoothness" mask regulariser, an edge-aware smoothness of the soft masks is added instead of
relying on the depth ordering of eq. (3).

With the oracle rung "depth" the model output carries ``warp_depth`` (the scaled ground truth)
and a single scale; the warp then uses that depth. The per-component assignment
terms (:mod:`mds_core.method.losses.component_assignment`) with ``loss.assigned_reprojection_weight`` and
``loss.mask_assignment_weight``, at scale 0 only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mds_core.config import LossConfig, ModelConfig
from mds_core.data.sample import Batch
from mds_core.method.losses.component_assignment import assignment_targets, component_errors, mask_assignment
from mds_core.method.losses.photometric import minimum_reprojection, photometric_error
from mds_core.method.losses.smoothness import disparity_smoothness, edge_aware_smoothness
from mds_core.method.model import ModelOutput
from mds_core.method.networks import disparity_to_depth
from mds_core.method.warping import warp_source


@dataclass
class LossOutput:
    """The total loss, its parts (detached, for logging) and the full-resolution warps of scale 0."""

    total: Tensor
    photometric: Tensor
    smoothness: Tensor
    mask_smoothness: Tensor
    automask_fraction: Tensor
    assigned_reprojection: Tensor
    mask_assignment: Tensor
    warped_sources: Tensor  # (B, S, 3, H, W) warped source images at scale 0, detached
    per_pixel: Tensor  # (B, 1, H, W) photometric loss at scale 0, detached

    def scalars(self) -> dict[str, float]:
        return {
            "loss/total": float(self.total.detach()),
            "loss/photometric": float(self.photometric),
            "loss/smoothness": float(self.smoothness),
            "loss/mask_smoothness": float(self.mask_smoothness),
            "automask/fraction_kept": float(self.automask_fraction),
            "masks/assigned_reprojection": float(self.assigned_reprojection),
            "masks/assignment": float(self.mask_assignment),
        }


class SelfSupervisedObjective:
    """Callable ``(batch, model_output) -> LossOutput``."""

    def __init__(self, loss: LossConfig, model: ModelConfig):
        self.loss = loss
        self.model = model

    def __call__(self, batch: Batch, output: ModelOutput, step: int | None = None) -> LossOutput:
        """``step``: the training step, for ``loss.automask_start_step`` (None: past every warm-up)."""
        cfg = self.loss
        target = batch.target.float()
        sources = batch.sources.float()
        intrinsics = batch.intrinsics.float()
        inv_intrinsics = torch.linalg.inv(intrinsics)
        height, width = target.shape[-2:]

        identity = None
        if cfg.automask and (step is None or step >= cfg.automask_start_step):
            identity = torch.cat(
                [photometric_error(sources[:, s], target, cfg.ssim_weight) for s in range(sources.shape[1])],
                dim=1,
            )

        totals, photometric_terms, smooth_terms = [], [], []
        assigned_reprojection = assignment = target.new_zeros(())
        warped_scale0 = per_pixel_scale0 = automask_scale0 = None
        for scale, disparity in enumerate(output.disparities):
            disparity = disparity.float()
            full = F.interpolate(disparity, size=(height, width), mode="bilinear", align_corners=False)
            if output.warp_depth is not None:
                depth = output.warp_depth.float()
            else:
                depth = disparity_to_depth(full, self.model.min_depth, self.model.max_depth)
            warped, errors = [], []
            for s, source_motion in enumerate(output.sources):
                result = warp_source(sources[:, s], depth, intrinsics, source_motion.motion, inv_intrinsics)
                warped.append(result.image)
                errors.append(photometric_error(result.image, target, cfg.ssim_weight))
            reprojection = minimum_reprojection(torch.cat(errors, dim=1), identity, cfg.min_reprojection)
            photometric = reprojection.per_pixel.mean()

            scaled_image = F.interpolate(target, size=disparity.shape[-2:], mode="area")
            smoothness = disparity_smoothness(disparity, scaled_image)
            totals.append(photometric + cfg.smoothness_weight / (2**scale) * smoothness)
            photometric_terms.append(photometric.detach())
            smooth_terms.append(smoothness.detach())
            if scale == 0 and self.model.num_components > 1 and output.components_enabled and (
                    cfg.assigned_reprojection_weight > 0 or cfg.mask_assignment_weight > 0):
                assigned_reprojection, assignment = self._component_terms(
                    output, sources, target, depth, intrinsics, inv_intrinsics, identity)
                totals[-1] = totals[-1] + cfg.assigned_reprojection_weight * assigned_reprojection
                totals[-1] = totals[-1] + cfg.mask_assignment_weight * assignment
            if scale == 0:
                warped_scale0 = torch.stack(warped, dim=1).detach()
                per_pixel_scale0 = reprojection.per_pixel.detach()
                automask_scale0 = reprojection.automask

        total = torch.stack(totals).mean()
        mask_smoothness = target.new_zeros(())
        if self.model.mask_regulariser == "smoothness" and self.model.num_components > 1:
            mask_smoothness = torch.stack(
                [edge_aware_smoothness(src.motion.masks.float(), target) for src in output.sources]
            ).mean()
            total = total + cfg.mask_smoothness_weight * mask_smoothness
        automask_fraction = (
            automask_scale0.mean() if automask_scale0 is not None else target.new_ones(())
        )
        return LossOutput(
            total=total,
            photometric=torch.stack(photometric_terms).mean(),
            smoothness=torch.stack(smooth_terms).mean(),
            mask_smoothness=mask_smoothness.detach(),
            automask_fraction=automask_fraction.detach(),
            assigned_reprojection=assigned_reprojection.detach(),
            mask_assignment=assignment.detach(),
            warped_sources=warped_scale0,
            per_pixel=per_pixel_scale0,
        )

    def _component_terms(self, output: ModelOutput, sources: Tensor, target: Tensor, depth: Tensor,
                         intrinsics: Tensor, inv_intrinsics: Tensor, identity: Tensor | None) -> tuple[Tensor, Tensor]:
        """The assigned reprojection and the mask assignment of :mod:`component_assignment` at scale 0."""
        cfg = self.loss
        per_source = [
            component_errors(sources[:, s], target, depth, intrinsics, inv_intrinsics,
                             source_motion.motion.transforms, cfg.ssim_weight)
            for s, source_motion in enumerate(output.sources)
        ]
        window = 2 * int(cfg.assignment_window * target.shape[-1] / 2) + 1
        targets = assignment_targets(torch.stack(per_source).amin(dim=0).detach(), cfg.assignment_margin, window)
        chosen = torch.cat([errors.gather(1, targets[:, None]) for errors in per_source], dim=1)
        reprojection = minimum_reprojection(chosen, identity, cfg.min_reprojection)
        assigned_reprojection = reprojection.per_pixel.mean()
        assignment = torch.stack([mask_assignment(src.soft_masks.float(), targets) for src in output.sources]).mean()
        return assigned_reprojection, assignment
