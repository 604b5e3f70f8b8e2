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

Every warp of a step -- each source at each scale's depth, and at scale 0 each source by each
component alone -- is sampled in one ``grid_sample`` call and compared with the target in one
photometric call, instead of one call per scale, source and component: the same maths in a
fraction of the operations (``test/test_objective_reference.py`` keeps the plain loop as the
reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mds_core.config import LossConfig, ModelConfig
from mds_core.data.sample import Batch
from mds_core.method.decomposition import BACKGROUND_COMPONENT
from mds_core.method.geometry import backproject, project
from mds_core.method.losses.component_assignment import (
    assignment_targets,
    background_pixels,
    background_reprojection,
    component_pixels,
    mask_assignment,
    standing_camera,
)
from mds_core.method.losses.photometric import minimum_reprojection, photometric_error
from mds_core.method.losses.scene_flow_terms import SceneFlowTerms, scene_flow_terms
from mds_core.method.losses.smoothness import disparity_smoothness, edge_aware_smoothness
from mds_core.method.model import ModelOutput
from mds_core.method.motion_evidence import MotionEvidence, flow_motion_evidence, motion_evidence
from mds_core.method.networks import disparity_to_depth
from mds_core.method.networks.layers import resize_bilinear
from mds_core.method.warping import sample_source


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
    background_reprojection: Tensor
    standing_camera: Tensor  # the ego-motion's distance from the identity on frames seen standing still
    evidence_fraction: Tensor  # fraction of the pixels the motion evidence says move
    static_fraction: Tensor  # fraction of the pixels it says are static (standing frames only)
    warped_sources: Tensor  # (B, S, 3, H, W) warped source images at scale 0, detached
    per_pixel: Tensor  # (B, 1, H, W) photometric loss at scale 0, detached
    scene_flow: SceneFlowTerms | None = None  # the scene-flow model's regularisers (unweighted)

    def scalars(self) -> dict[str, float]:
        extra = self.scene_flow.scalars() if self.scene_flow is not None else {}
        return extra | {
            "loss/total": float(self.total.detach()),
            "loss/photometric": float(self.photometric),
            "loss/smoothness": float(self.smoothness),
            "loss/mask_smoothness": float(self.mask_smoothness),
            "automask/fraction_kept": float(self.automask_fraction),
            "masks/assigned_reprojection": float(self.assigned_reprojection),
            "masks/assignment": float(self.mask_assignment),
            "masks/background_reprojection": float(self.background_reprojection),
            "masks/standing_camera": float(self.standing_camera),
            "masks/evidence_fraction": float(self.evidence_fraction),
            "masks/static_fraction": float(self.static_fraction),
        }


class SelfSupervisedObjective:
    """Callable ``(batch, model_output) -> LossOutput``."""

    def __init__(self, loss: LossConfig, model: ModelConfig):
        self.loss = loss
        self.model = model

    def __call__(self, batch: Batch, output: ModelOutput, step: int | None = None, stage_step: int | None = None,
                 automask: bool = True, trains_depth: bool = True) -> LossOutput:
        """``step``: the training step, for ``loss.automask_start_step`` (None: past every warm-up).

        The training stage (mds_core.training.stages) says the rest: ``stage_step``, the step within
        the stage, ramps the scene-flow terms in (None: fully on); ``automask``: whether the stage
        auto-masks; ``trains_depth``: whether the depth network learns in it (the disparity
        smoothness and the ground term act only then, as in Dynamo-Depth's stages).
        """
        cfg = self.loss
        target = batch.target.float()
        sources = batch.sources.float().transpose(0, 1)  # (S, B, 3, H, W)
        intrinsics = batch.intrinsics.float()
        disparities = [disparity.float() for disparity in output.disparities]
        num_scales = len(disparities)

        identity = None
        if cfg.automask and automask and (step is None or step >= cfg.automask_start_step):
            # (B, S, H, W), contiguous: the auto-masking noise (randn_like) follows the memory layout
            identity = photometric_error(sources, target, cfg.ssim_weight)[:, :, 0].transpose(0, 1).contiguous()

        depths = self._warp_depths(output, disparities, target.shape[-2:])
        points = backproject(depths, torch.linalg.inv(intrinsics))  # (N, B, 3, H, W)
        pixels = torch.stack([project(src.motion.transform_points(points), intrinsics) for src in output.sources])
        with_components = self._uses_component_terms(output)
        with_background = with_components and cfg.background_reprojection_weight > 0
        if with_components:
            pixels = torch.cat([pixels, torch.stack(
                [component_pixels(points[0], intrinsics, src.motion) for src in output.sources])], dim=1)
        if with_background:
            pixels = torch.cat([pixels, torch.stack([background_pixels(points[0].detach(), intrinsics, src.motion)
                                                     for src in output.sources])[:, None]], dim=1)
        warped = sample_source(sources[:, None], pixels)  # (S, N [+ K [+ 1]], B, 3, H, W)
        errors = photometric_error(warped, target, cfg.ssim_weight)[:, :, :, 0]  # (S, N [+ K [+ 1]], B, H, W)

        totals, photometric_terms, smooth_terms = [], [], []
        assigned_reprojection = assignment = background = standing = target.new_zeros(())
        evidence_fraction = static_fraction = target.new_zeros(())
        evidence = None
        per_pixel_scale0 = automask_scale0 = None
        for scale, disparity in enumerate(disparities):
            reprojection = minimum_reprojection(errors[:, scale].transpose(0, 1), identity, cfg.min_reprojection)
            photometric = reprojection.per_pixel.mean()

            scaled_image = F.interpolate(target, size=disparity.shape[-2:], mode="area")
            smoothness = disparity_smoothness(disparity, scaled_image)
            totals.append(photometric + (cfg.smoothness_weight / (2**scale) * smoothness if trains_depth else 0.0))
            photometric_terms.append(photometric.detach())
            smooth_terms.append(smoothness.detach())
            if scale == 0 and (with_components or with_background):
                evidence = self._motion_evidence(batch, output, depths[0])
                if evidence is not None:
                    evidence_fraction = evidence.moving.float().mean()
                    static_fraction = evidence.static.float().mean()
                if with_background:
                    background = background_reprojection(errors[:, -1], evidence.moving if evidence is not None else None)
                    totals[-1] = totals[-1] + cfg.background_reprojection_weight * background
                if evidence is not None and cfg.standing_camera_weight > 0:
                    ego = torch.stack([src.motion.transforms[:, BACKGROUND_COMPONENT] for src in output.sources])
                    standing = standing_camera(ego.float(), evidence.still, self.model.pose_scale)
                    totals[-1] = totals[-1] + cfg.standing_camera_weight * standing
            if scale == 0 and with_components:
                num_components = output.sources[0].motion.num_components
                assigned_reprojection, assignment = self._component_terms(
                    output, errors[:, num_scales:num_scales + num_components], identity, evidence)
                totals[-1] = totals[-1] + cfg.assigned_reprojection_weight * assigned_reprojection
                totals[-1] = totals[-1] + cfg.mask_assignment_weight * assignment
            if scale == 0:
                per_pixel_scale0 = reprojection.per_pixel.detach()
                automask_scale0 = reprojection.automask
        warped_scale0 = warped[:, 0].transpose(0, 1).detach()

        total = torch.stack(totals).mean()
        flow_terms = None
        if self.model.motion_model == "scene_flow":
            flow_terms = scene_flow_terms(output.sources, disparities, target, points, intrinsics, cfg.scene_flow,
                                          self.model.min_depth, self.model.max_depth,
                                          with_ground=output.warp_depth is None and trains_depth)
            total = total + flow_terms.weighted(cfg.scene_flow, stage_step)
        mask_smoothness = target.new_zeros(())
        if self.model.mask_regulariser == "smoothness" and self._has_components:
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
            background_reprojection=background.detach(),
            standing_camera=standing.detach(),
            evidence_fraction=evidence_fraction,
            static_fraction=static_fraction,
            warped_sources=warped_scale0,
            per_pixel=per_pixel_scale0,
            scene_flow=flow_terms,
        )

    def _warp_depths(self, output: ModelOutput, disparities: list[Tensor], size: tuple[int, int]) -> Tensor:
        """``(N, B, 1, H, W)``: the depth each scale warps with, from its disparity upsampled (bilinear) to
        the input resolution, or the oracle rung's ``warp_depth``."""
        if output.warp_depth is not None:
            return output.warp_depth.float()[None].expand(len(disparities), *output.warp_depth.shape)
        full = torch.stack([resize_bilinear(d, size) for d in disparities])
        return disparity_to_depth(full, self.model.min_depth, self.model.max_depth)

    @property
    def needs_optical_flow(self) -> bool:
        """Whether the objective computes the motion evidence (so a training data set should give the
        batches their optical flow: :meth:`~mds_core.data.dataset.TripletDataset.compute_optical_flow`)."""
        cfg = self.loss
        return (cfg.motion_evidence_threshold > 0 and self._has_components
                and (cfg.assigned_reprojection_weight > 0 or cfg.mask_assignment_weight > 0))

    @property
    def _has_components(self) -> bool:
        return (self.model.motion_model == "components" and self.model.num_components > 1
                and self.model.motion_source == "network")

    def _uses_component_terms(self, output: ModelOutput) -> bool:
        cfg = self.loss
        return (self._has_components and output.components_enabled
                and (cfg.assigned_reprojection_weight > 0 or cfg.mask_assignment_weight > 0))

    def _assignment_window(self, width: int) -> int:
        return 2 * int(self.loss.assignment_window * width / 2) + 1

    def _motion_evidence(self, batch: Batch, output: ModelOutput, depth: Tensor) -> MotionEvidence | None:
        """What the optical flow between the target and its sources says moves, under the background
        component's motion (:mod:`mds_core.method.motion_evidence`); None when
        ``loss.motion_evidence_threshold`` is 0. On the oracle rung "movers", what the scene's labels say."""
        if self.model.moving_pixels_source == "ground_truth":
            return self._labelled_evidence(batch, output, depth)
        if self.loss.motion_evidence_threshold <= 0:
            return None
        return self._flow_evidence(batch, output, depth)

    def _flow_evidence(self, batch: Batch, output: ModelOutput, depth: Tensor) -> MotionEvidence:
        cfg = self.loss
        width = batch.target.shape[-1]
        flow = batch.optical_flow
        threshold, window = cfg.motion_evidence_threshold * width, self._assignment_window(width)
        if cfg.motion_evidence_ego == "flow":
            found = [flow_motion_evidence(batch.target, batch.sources[:, s], batch.intrinsics, depth, threshold, window,
                                          None if flow is None else flow.source(s)) for s in range(len(output.sources))]
        else:
            found = [motion_evidence(batch.target, batch.sources[:, s], src.motion.transforms[:, BACKGROUND_COMPONENT],
                                     batch.intrinsics, depth, threshold, window, None if flow is None else flow.source(s))
                     for s, src in enumerate(output.sources)]
        return MotionEvidence.across_sources(found)

    def _labelled_evidence(self, batch: Batch, output: ModelOutput, depth: Tensor) -> MotionEvidence:
        """The oracle rung "movers": the moving and static pixels from the scene's labels; whether the camera
        stood still from the flow's evidence (none when ``loss.motion_evidence_threshold`` is 0)."""
        if batch.motion is None:
            raise ValueError("model.moving_pixels_source is ground_truth: the batch needs the scene's motion labels")
        if self.loss.motion_evidence_threshold > 0:
            still = self._flow_evidence(batch, output, depth).still
        else:
            still = torch.zeros(batch.target.shape[0], dtype=torch.bool, device=batch.target.device)
        return MotionEvidence.labelled(batch.motion, batch.target.shape[-2:], still)

    def _component_terms(self, output: ModelOutput, errors: Tensor, identity: Tensor | None,
                         evidence: MotionEvidence | None = None) -> tuple[Tensor, Tensor]:
        """The assigned reprojection and the mask assignment of :mod:`component_assignment` at scale 0, from the
        ``(S, K, B, H, W)`` photometric errors of each source warped by each component alone; ``evidence``:
        its moving pixels are assigned away from the background, its static ones to it."""
        moving = evidence.moving if evidence is not None else None
        cfg = self.loss
        per_source = errors.transpose(1, 2)  # (S, B, K, H, W)
        targets = assignment_targets(per_source.amin(dim=0).detach(), cfg.assignment_margin,
                                     self._assignment_window(errors.shape[-1]), moving=moving,
                                     static=evidence.static if evidence is not None else None)
        chosen = torch.cat([source_errors.gather(1, targets[:, None]) for source_errors in per_source], dim=1)
        reprojection = minimum_reprojection(chosen, identity, cfg.min_reprojection)
        assigned_reprojection = reprojection.per_pixel.mean()
        assignment = torch.stack([mask_assignment(src.soft_masks.float(), targets, moving)
                                  for src in output.sources]).mean()
        return assigned_reprojection, assignment
