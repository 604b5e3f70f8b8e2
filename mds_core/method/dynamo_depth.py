"""Dynamo-Depth: the depth network, an ego-pose network and a scene-flow network, composed.

The second motion model (``model.motion_model: scene_flow``). For each source frame ``o`` (-1 or
+1) the ego-pose network gives the rigid motion ``T_o`` (target camera -> source camera, the same
frame-order convention as MonoDepthSeg: pairs in temporal order, the previous frame's motion
inverted), and the scene-flow network gives, from (previous, target, next) and the detached
one-step ego-motion, the complete flow toward the next frame and the motion mask at every scale.
By constant velocity the complete flow toward source ``o`` is ``o`` times the flow toward the next
frame (:func:`mds_core.method.scene_flow.constant_velocity_flow`). Each scale's flow and mask are
upsampled (bilinear) to the input resolution, like the disparities, and the warp of
:mod:`mds_core.method.scene_flow` moves each scale's points with its own.

Training stages switch parts of the motion model (``flow_enabled``, ``mask_enabled``), as the
public release does:

* rigid (both off): the ego-motion alone, ``M = 0``;
* flow (flow on, mask off): the complete flow alone moves the points, ``P + C`` (``T = I``,
  ``M = 1``), so that the flow network learns the whole apparent motion before the mask exists;
* mask and joint (both on): ``T (P + M (C - E))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mds_core.config import ModelConfig
from mds_core.method.geometry import pose_vector_to_transform
from mds_core.method.model import DepthModel, ModelOutput
from mds_core.method.networks import EgoPoseNet, SceneFlowNet
from mds_core.method.networks.layers import resize_bilinear
from mds_core.method.networks.scene_flow import SceneFlowOutput
from mds_core.method.scene_flow import SceneFlowMotion, constant_velocity_flow

#: The frames the scene-flow network sees around the target.
SCENE_FLOW_OFFSETS = (-1, 1)


@dataclass
class SceneFlowSource:
    """The motion predicted for one source frame.

    Attributes:
        offset: temporal offset of the source frame relative to the target.
        motion: the warp's motion model; its flow and mask carry a leading scale dimension
            ``(S, B, C, H, W)`` at the input resolution (scale 0 first), matching the objective's
            per-scale points.
        complete_flow: per scale, ``(B, 3, H/2^s, W/2^s)`` complete flow toward this source.
        mask_logits: per scale, ``(B, 1, H/2^s, W/2^s)`` motion-mask logits (None before the mask stage).
    """

    offset: int
    motion: SceneFlowMotion
    complete_flow: list[Tensor] | None
    mask_logits: list[Tensor] | None

    def at_scale(self, scale: int) -> SceneFlowMotion:
        """The motion of one scale, for ``(B, 3, H, W)`` points."""
        return SceneFlowMotion(self.motion.ego, self.motion.complete_flow[scale], self.motion.mask[scale])


class DynamoDepth(DepthModel):
    """Depth network + ego-pose network + scene-flow network (``model.motion_model: scene_flow``)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.ego_pose_net = EgoPoseNet(config.pose_mask_encoder, config.pose_scale)
        self.scene_flow_net = SceneFlowNet(config.pose_mask_encoder, config.num_scales, pose_scale=config.pose_scale)
        self.flow_enabled = True  # False in the rigid stage (set by the training schedule)
        self.mask_enabled = True  # False in the rigid and flow stages

    def predict_ego_motion(self, target: Tensor, sources: Tensor, offsets: list[int]) -> list[tuple[Tensor, Tensor]]:
        """Per source, ``(pose (B, 6) as predicted, earlier -> later; (B, 4, 4) target -> source)``.
        All pairs go through the ego-pose network as one batch."""
        batch = target.shape[0]
        earlier = torch.cat([sources[:, s] if o < 0 else target for s, o in enumerate(offsets)])
        later = torch.cat([target if o < 0 else sources[:, s] for s, o in enumerate(offsets)])
        axis_angle, translation = self.ego_pose_net(earlier, later)
        motions = []
        for s, offset in enumerate(offsets):
            rows = slice(s * batch, (s + 1) * batch)
            pose = torch.cat([translation[rows], axis_angle[rows]], dim=1).float()  # fp32 whatever autocast did
            motions.append((pose, pose_vector_to_transform(axis_angle[rows], translation[rows], invert=offset < 0)))
        return motions

    def predict_scene_flow(self, previous: Tensor, target: Tensor, following: Tensor,
                           poses: list[Tensor]) -> SceneFlowOutput:
        """The scene-flow network, conditioned on the mean one-step ego-motion of the pairs."""
        out = self.scene_flow_net(previous, target, following, torch.stack(poses).mean(dim=0))
        # fp32 for the warp and losses, whatever autocast did in the network
        return SceneFlowOutput([c.float() for c in out.complete_flow], [m.float() for m in out.mask_logits])

    def forward(self, images: Tensor, offsets: list[int], depth: Tensor | None = None) -> ModelOutput:
        """``images``: ``(B, 1 + S, 3, H, W)``, target first; ``offsets`` must be -1 and +1.

        ``depth``: ``(B, 1, H, W)`` ground-truth depth in metres, for ``model.depth_source = "ground_truth"``.
        """
        if sorted(offsets) != list(SCENE_FLOW_OFFSETS):
            raise ValueError(f"the scene-flow model needs source offsets -1 and +1, got {offsets}")
        target = images[:, 0]
        height, width = target.shape[-2:]
        warp_depth = None
        if self.uses_depth_network:
            disparities = self.predict_disparity(target)
            output_depth = self.to_depth(disparities[0])
        else:
            if depth is None:
                raise ValueError("model.depth_source is ground_truth: pass the ground-truth depth")
            disparities = [self.oracle_disparity(depth)]
            output_depth = warp_depth = depth * self.config.ground_truth_depth_scale
        ego = self.predict_ego_motion(target, images[:, 1:], offsets)
        flow = None
        if self.flow_enabled:
            previous, following = (images[:, 1 + offsets.index(o)] for o in SCENE_FLOW_OFFSETS)
            flow = self.predict_scene_flow(previous, target, following, [pose for pose, _ in ego])
        sources = []
        for s, offset in enumerate(offsets):
            _, to_source = ego[s]
            sources.append(self._source_motion(offset, to_source, flow, len(disparities), (height, width)))
        return ModelOutput(disparities=disparities, depth=output_depth, sources=sources, warp_depth=warp_depth)

    def _source_motion(self, offset: int, to_source: Tensor, flow: SceneFlowOutput | None,
                       num_scales: int, size: tuple[int, int]) -> SceneFlowSource:
        batch = to_source.shape[0]
        if flow is None:  # rigid stage: the ego-motion alone
            zeros = to_source.new_zeros(1, 1, 1, 1, 1)
            motion = SceneFlowMotion(to_source, zeros.expand(num_scales, batch, 3, *size),
                                     zeros.expand(num_scales, batch, 1, *size))
            return SceneFlowSource(offset, motion, None, None)
        complete = [constant_velocity_flow(c, offset) for c in flow.complete_flow[:num_scales]]
        full_flow = torch.stack([resize_bilinear(c, size) for c in complete])
        if not self.mask_enabled:  # flow stage: P + C, no ego-motion, no mask
            identity = torch.eye(4, dtype=to_source.dtype, device=to_source.device).expand(batch, 4, 4)
            ones = full_flow.new_ones(1, 1, 1, 1, 1).expand(num_scales, batch, 1, *size)
            return SceneFlowSource(offset, SceneFlowMotion(identity, full_flow, ones), complete, None)
        masks = torch.stack([resize_bilinear(m, size) for m in flow.motion_mask[:num_scales]])
        return SceneFlowSource(offset, SceneFlowMotion(to_source, full_flow, masks), complete, flow.mask_logits[:num_scales])

