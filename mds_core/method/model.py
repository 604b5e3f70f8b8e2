"""MonoDepthSeg: the depth network and the pose+mask network, composed (paper Fig. 2).

Frame-order convention (Monodepth2): each (target, source) pair enters the pose+mask network
in temporal order -- ``(I_-1, I_0)`` for a previous source and ``(I_0, I_+1)`` for a next one --
always with the target's depth as the seventh channel. The K predicted transforms map points
of the earlier frame's camera into the later frame's; the warp needs target -> source, so the
transforms of a previous source are inverted (exactly: ``R^T Trans(-t)``). The masks always
live on the target's pixel grid.

With ``num_components = 1`` the mask is identically 1 and the model is Monodepth2 with a
depth-conditioned pose network: the baseline of every comparison.

Oracle rung "depth" (``model.depth_source = "ground_truth"``): there is no depth network; the
caller passes the ground-truth depth (:mod:`mds_core.method.oracle`) and the model returns it as
a single-scale "disparity" so that the objective and the predictor work unchanged.

Learning aids: ``model.motion_hypotheses`` makes components 1..K-1 scaled copies of the
background's motion plus a bounded residual; ``components_enabled = False`` (set by the training
loop during ``decomposition.warmup_steps``) puts all mask mass on the background component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mds_core.config import ModelConfig
from mds_core.method.decomposition import (
    ComponentMotion,
    background_only_masks,
    depth_ordered_softmax,
    hypothesis_motions,
    plain_softmax,
    scene_speed,
    zero_residual_motions,
)
from mds_core.method.geometry import pose_vector_to_transform
from mds_core.method.networks import DepthNet, PoseMaskNet, disparity_to_depth
from mds_core.method.oracle import depth_to_disparity
from mds_core.method.true_motion import TrueMotion

if TYPE_CHECKING:
    from mds_core.method.dynamo_depth import SceneFlowSource


@dataclass
class SourceMotion:
    """The decomposition predicted for one source frame."""

    offset: int  # temporal offset of the source frame relative to the target
    motion: ComponentMotion  # masks and target->source transforms (eq. 6)
    mask_logits: Tensor  # (B, K, H, W) decoder output M'
    soft_masks: Tensor  # (B, K, H, W) eq. (3) masks (the warm-up's one-hot masks are in ``motion``)
    component_transforms: Tensor  # (B, K, 4, 4) as predicted: earlier frame -> later frame


@dataclass
class ModelOutput:
    """Everything the losses, the logger and the predictor need from one forward pass."""

    disparities: list[Tensor]  # sigmoid disparity per scale, (B, 1, H/2^s, W/2^s)
    depth: Tensor  # (B, 1, H, W) depth at scale 0
    sources: list[SourceMotion] | list[SceneFlowSource]  # per source frame: components, or scene flow
    # (B, 1, H, W) the depth the warp must use when it is not the disparities' (the oracle rung's
    # scaled ground truth); None: depth from each scale's disparity
    warp_depth: Tensor | None = None
    # False during the K=1 warm-up: the per-component terms of the objective are skipped
    components_enabled: bool = True


class DepthModel(nn.Module):
    """The depth half both motion models share: the depth network, or on the oracle rung "depth"
    (``model.depth_source = "ground_truth"``) none, the caller passing the ground truth."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.depth_net = DepthNet(config.depth_encoder, config.num_scales) if self.uses_depth_network else None

    @property
    def uses_depth_network(self) -> bool:
        return self.config.depth_source == "network"

    def predict_disparity(self, image: Tensor) -> list[Tensor]:
        if self.depth_net is None:
            raise RuntimeError("this model uses ground-truth depth (model.depth_source); it has no depth network")
        return [d.float() for d in self.depth_net(image)]  # fp32 for the warp and losses, whatever autocast did

    def to_depth(self, disparity: Tensor) -> Tensor:
        return disparity_to_depth(disparity, self.config.min_depth, self.config.max_depth)

    def oracle_disparity(self, depth: Tensor) -> Tensor:
        """The sigmoid disparity of ground-truth ``depth`` (metres, clamped; the motion networks' input)."""
        return depth_to_disparity(depth, self.config.min_depth, self.config.max_depth)


class MonoDepthSeg(DepthModel):
    """Depth network + pose/mask network with a shared encoder."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.pose_mask_net = PoseMaskNet(config.pose_mask_encoder, config.num_components, config.pose_scale)
        if config.hypotheses:
            zero_residual_motions(self.pose_mask_net.pose_decoder.net[-1])
        self.components_enabled = True  # False during the K=1 warm-up (set by the training loop)

    def to_masks(self, logits: Tensor) -> Tensor:
        """Soft masks of eq. (3) (or a plain softmax with the smoothness regulariser)."""
        if self.config.mask_regulariser == "depth_ordering":
            return depth_ordered_softmax(logits)
        return plain_softmax(logits)

    def warp_masks(self, soft: Tensor) -> Tensor:
        """The masks the warp uses: background-only during the warm-up, else the soft masks."""
        if not self.components_enabled:
            return background_only_masks(soft)
        return soft

    def predict_motion(self, target: Tensor, sources: Tensor, offsets: list[int], disparity: Tensor,
                       depth: Tensor | None = None) -> list[SourceMotion]:
        """Decompose the motion between ``target`` and each of ``sources`` ``(B, S, 3, H, W)``.

        All S pairs go through the pose+mask network as one batch. ``depth``: the warp's depth, which
        sets the scale of the own-motion hypotheses (``model.hypothesis_scene_rate``); by default the
        depth of ``disparity``.
        """
        cfg = self.config
        speed = directions = None
        if cfg.hypotheses and cfg.hypothesis_scene_rate > 0:
            speed = scene_speed(self.to_depth(disparity) if depth is None else depth, cfg.hypothesis_scene_rate)
            if cfg.directions is not None:
                directions = torch.tensor(cfg.directions, device=disparity.device)
        batch, num_sources = sources.shape[:2]
        depth_input = disparity.detach() if self.config.detach_depth_input else disparity
        earlier, later = [], []
        for s, offset in enumerate(offsets):
            pair = (sources[:, s], target) if offset < 0 else (target, sources[:, s])
            earlier.append(pair[0])
            later.append(pair[1])
        out = self.pose_mask_net(
            torch.cat(earlier), torch.cat(later), depth_input.repeat(num_sources, 1, 1, 1)
        )
        results = []
        for s, offset in enumerate(offsets):
            rows = slice(s * batch, (s + 1) * batch)
            # fp32 from here on whatever autocast did in the network (poses enter the warp in fp32)
            axis_angle, translation = out.axis_angle[rows].float(), out.translation[rows].float()
            if self.config.hypotheses:
                axis_angle, translation = hypothesis_motions(
                    axis_angle, translation, cfg.hypotheses, cfg.hypothesis_spread, cfg.pose_scale,
                    directions, speed)
            predicted = pose_vector_to_transform(axis_angle, translation)
            to_source = pose_vector_to_transform(axis_angle, translation, invert=offset < 0)
            logits = out.mask_logits[rows].float()
            soft = self.to_masks(logits)
            results.append(
                SourceMotion(
                    offset=offset,
                    motion=ComponentMotion(masks=self.warp_masks(soft), transforms=to_source),
                    mask_logits=logits,
                    soft_masks=soft,
                    component_transforms=predicted,
                )
            )
        return results

    def true_motion_sources(self, true_motion: TrueMotion | None, offsets: list[int], disparity: Tensor) -> list[SourceMotion]:
        """The oracle rung "motion" (``model.motion_source``): the warp takes the scene's true motions."""
        if true_motion is None:
            raise ValueError(f"model.motion_source is {self.config.motion_source}: pass the batch's true motion")
        if self.config.motion_source == "true_camera":
            true_motion = true_motion.camera_only()
        true_motion = true_motion.scaled(self.config.true_motion_scale)
        height, width = disparity.shape[-2:]
        results = []
        for s, offset in enumerate(offsets):
            motion = true_motion.component_motion(s, height, width)
            logits = torch.log(motion.masks.clamp_min(1e-6))
            results.append(SourceMotion(offset=offset, motion=motion, mask_logits=logits, soft_masks=motion.masks,
                                        component_transforms=motion.transforms if offset > 0
                                        else torch.linalg.inv(motion.transforms)))
        return results

    def forward(self, images: Tensor, offsets: list[int], depth: Tensor | None = None,
                true_motion: TrueMotion | None = None) -> ModelOutput:
        """``images``: ``(B, 1 + S, 3, H, W)`` network inputs, target first (see :class:`Sample`).

        ``depth``: ``(B, 1, H, W)`` ground-truth depth in metres at the model resolution
        (:func:`mds_core.method.oracle.ground_truth_depth`); required with
        ``model.depth_source = "ground_truth"``, ignored otherwise. ``true_motion``: the batch's
        (:mod:`mds_core.method.true_motion`); required with ``model.motion_source`` true_scene or
        true_camera, which train the depth network alone (the per-component terms are off).
        """
        if images.shape[1] != 1 + len(offsets):
            raise ValueError(f"expected {1 + len(offsets)} frames per sample, got {images.shape[1]}")
        target = images[:, 0]
        if self.config.motion_source != "network":
            disparities = self.predict_disparity(target)
            sources = self.true_motion_sources(true_motion, offsets, disparities[0])
            return ModelOutput(disparities=disparities, depth=self.to_depth(disparities[0]), sources=sources,
                               components_enabled=False)
        if self.uses_depth_network:
            disparities = self.predict_disparity(target)
            depth = self.to_depth(disparities[0])
            sources = self.predict_motion(target, images[:, 1:], offsets, disparities[0], depth)
            return ModelOutput(disparities=disparities, depth=depth, sources=sources,
                               components_enabled=self.components_enabled)
        if depth is None:
            raise ValueError("model.depth_source is ground_truth: pass the ground-truth depth")
        disparity = self.oracle_disparity(depth)
        warp_depth = depth * self.config.ground_truth_depth_scale
        sources = self.predict_motion(target, images[:, 1:], offsets, disparity, warp_depth)
        return ModelOutput(disparities=[disparity], depth=warp_depth, sources=sources, warp_depth=warp_depth,
                           components_enabled=self.components_enabled)
