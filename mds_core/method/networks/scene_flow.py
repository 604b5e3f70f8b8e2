"""Dynamo-Depth's motion networks (the second motion model; ``shared/notes/method.md``).

* :class:`EgoPoseNet`: a ResNet over the frame pair in temporal order (6 channels) and a pose
  decoder with one output motion: the ego-motion, as Monodepth2's pose network.
* :class:`SceneFlowNet`: one ResNet encoder over (previous, target, next) (9 channels) shared by
  a complete-flow decoder (3 channels, scaled by ``flow_scale`` = 0.01) and a motion-mask decoder
  (1 channel, a logit; the mask is its sigmoid). Both decoders are conditioned on the ego-motion,
  detached, broadcast over the input of every decoder level.

The geometry that uses their outputs is :mod:`mds_core.method.scene_flow`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mds_core.method.networks.pose_mask import PoseDecoder
from mds_core.method.networks.resnet_encoder import ResnetEncoder
from mds_core.method.networks.unet_decoder import UNetDecoder

#: The ego-motion of each of the two sources (axis-angle and translation): the decoders' condition.
EGO_CONDITION_CHANNELS = 12


class EgoPoseNet(nn.Module):
    """One rigid motion (earlier frame -> later frame) from a frame pair in temporal order."""

    def __init__(self, backbone: str = "resnet18", pose_scale: float = 0.01):
        super().__init__()
        self.encoder = ResnetEncoder(backbone, in_channels=6)
        self.decoder = PoseDecoder(self.encoder.channels[-1], 1, pose_scale)

    def forward(self, earlier: Tensor, later: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 3)`` axis-angle and ``(B, 3)`` translation (already scaled by ``pose_scale``)."""
        axis_angle, translation = self.decoder(self.encoder(torch.cat([earlier, later], dim=1))[-1])
        return axis_angle[:, 0], translation[:, 0]


@dataclass
class SceneFlowOutput:
    """Raw outputs of :class:`SceneFlowNet` for one target frame.

    Attributes:
        complete_flow: ``(B, 3, H, W)`` complete 3D flow toward the next frame, target camera frame.
        mask_logits: ``(B, 1, H, W)`` motion-mask logits; :attr:`motion_mask` is their sigmoid.
    """

    complete_flow: Tensor
    mask_logits: Tensor

    @property
    def motion_mask(self) -> Tensor:
        return torch.sigmoid(self.mask_logits)


class SceneFlowNet(nn.Module):
    """Complete scene flow and motion mask from (previous, target, next) and the ego-motion."""

    def __init__(self, backbone: str = "resnet18", flow_scale: float = 0.01, pose_scale: float = 0.01):
        super().__init__()
        self.flow_scale = flow_scale
        self.pose_scale = pose_scale
        self.encoder = ResnetEncoder(backbone, in_channels=9)
        channels, reductions = self.encoder.channels, self.encoder.reductions
        self.flow_decoder = UNetDecoder(channels, reductions, 3, condition_channels=EGO_CONDITION_CHANNELS)
        self.mask_decoder = UNetDecoder(channels, reductions, 1, condition_channels=EGO_CONDITION_CHANNELS)

    def forward(self, previous: Tensor, target: Tensor, following: Tensor, ego_motion: Tensor) -> SceneFlowOutput:
        """``ego_motion``: ``(B, 12)``, axis-angle and translation toward the previous and the next
        frame as the pose network predicts them (detached here: the flow does not train the pose)."""
        features = self.encoder(torch.cat([previous, target, following], dim=1))
        condition = ego_motion.detach() / self.pose_scale  # the pose decoder's output scaling undone
        return SceneFlowOutput(
            complete_flow=self.flow_decoder(features, condition) * self.flow_scale,
            mask_logits=self.mask_decoder(features, condition),
        )
