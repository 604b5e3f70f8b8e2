"""Dynamo-Depth's motion networks (the second motion model; docs/dynamo-depth-notes.md).

* :class:`EgoPoseNet`: a ResNet over the frame pair in temporal order (6 channels) and a pose
  decoder with one output motion: the ego-motion, as Monodepth2's pose network.
* :class:`SceneFlowNet`: one ResNet encoder over (previous, target, next) (9 channels) shared by
  a complete-flow decoder (3 channels) and a motion-mask decoder (1 channel, a logit; the mask
  is its sigmoid). Both are :class:`RefinementDecoder` s seeded by the ego-motion, detached.

:class:`RefinementDecoder` refines a motion field coarse to fine instead of decoding features into
it: the field starts as a 1x1 map computed from the ego-motion alone and, at each level from the
deepest encoder feature to the input frames themselves, is upsampled (bilinear) and corrected by
a residual predicted from the upsampled field and that level's features (two 3x3 convolutions and
a 1x1 convolution over both of their outputs, no activation). Every scale's field is ``scale``
(0.01) times the refined map. A field that starts as the ego-motion is a prior a static scene
already satisfies; the corrections are what moves on its own.

The geometry that uses their outputs is :mod:`mds_core.method.scene_flow`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mds_core.method.networks.pose_mask import PoseDecoder
from mds_core.method.networks.resnet_encoder import ResnetEncoder

#: The ego-motion the decoders start from: translation and axis-angle of one frame step.
EGO_MOTION_CHANNELS = 6
#: The input frames are the finest level of the refinement: previous, target and next (RGB).
FRAME_CHANNELS = 9


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


class RefinementLevel(nn.Module):
    """One level: ``field = conv1x1([x1, x2]) + up(field)``, ``x1 = conv3x3([up(field), feature])``,
    ``x2 = conv3x3(x1)``."""

    def __init__(self, feature_channels: int, out_channels: int):
        super().__init__()
        self.first = nn.Conv2d(feature_channels + out_channels, feature_channels, 3, padding=1)
        self.second = nn.Conv2d(feature_channels, feature_channels, 3, padding=1)
        self.residual = nn.Conv2d(2 * feature_channels, out_channels, 1)

    def forward(self, field: Tensor, feature: Tensor) -> Tensor:
        upsampled = F.interpolate(field, size=feature.shape[-2:], mode="bilinear", align_corners=False)
        first = self.first(torch.cat([upsampled, feature], dim=1))
        second = self.second(first)
        return self.residual(torch.cat([first, second], dim=1)) + upsampled


class RefinementDecoder(nn.Module):
    """A motion field refined from the ego-motion through the encoder levels and the input frames.

    ``levels`` are the feature channels from coarsest to finest (the last being the input frames).
    Returns the fields at scales ``0..num_scales-1`` (full resolution first), times ``scale``.
    """

    def __init__(self, levels: list[int], out_channels: int, num_scales: int = 4, scale: float = 0.01):
        super().__init__()
        if not 1 <= num_scales <= len(levels):
            raise ValueError(f"num_scales must be in 1..{len(levels)}, got {num_scales}")
        self.num_scales = num_scales
        self.scale = scale
        self.seed = nn.Conv2d(EGO_MOTION_CHANNELS, out_channels, 1)
        self.levels = nn.ModuleList(RefinementLevel(channels, out_channels) for channels in levels)

    def forward(self, features: list[Tensor], ego_motion: Tensor) -> list[Tensor]:
        """``features`` from coarsest to finest; ``ego_motion`` ``(B, 6)`` in units of the field."""
        field = self.seed(ego_motion[:, :, None, None].to(features[0].dtype))
        fields = []
        for level, feature in zip(self.levels, features, strict=True):
            field = level(field, feature)
            fields.append(field)
        return [self.scale * f for f in fields[::-1][: self.num_scales]]


@dataclass
class SceneFlowOutput:
    """Raw outputs of :class:`SceneFlowNet` for one target frame, per scale (full resolution first).

    Attributes:
        complete_flow: ``(B, 3, H/2^s, W/2^s)`` complete 3D flow toward the next frame, target camera frame.
        mask_logits: ``(B, 1, H/2^s, W/2^s)`` motion-mask logits; :attr:`motion_mask` are their sigmoids.
    """

    complete_flow: list[Tensor]
    mask_logits: list[Tensor]

    @property
    def motion_mask(self) -> list[Tensor]:
        return [torch.sigmoid(logits) for logits in self.mask_logits]


class SceneFlowNet(nn.Module):
    """Complete scene flow and motion mask from (previous, target, next) and the ego-motion."""

    def __init__(self, backbone: str = "resnet18", num_scales: int = 4, flow_scale: float = 0.01,
                 pose_scale: float = 0.01):
        super().__init__()
        self.pose_scale = pose_scale
        self.encoder = ResnetEncoder(backbone, in_channels=FRAME_CHANNELS)
        levels = [*self.encoder.channels[::-1], FRAME_CHANNELS]
        self.flow_decoder = RefinementDecoder(levels, 3, num_scales, flow_scale)
        self.mask_decoder = RefinementDecoder(levels, 1, num_scales, flow_scale)

    def forward(self, previous: Tensor, target: Tensor, following: Tensor, ego_motion: Tensor) -> SceneFlowOutput:
        """``ego_motion``: ``(B, 6)`` translation and axis-angle of one frame step as the pose network
        predicts them (the mean of its two temporal-order pairs); detached here, so the flow does not
        train the pose, and divided by the pose decoder's output scaling."""
        frames = torch.cat([previous, target, following], dim=1)
        features = [*self.encoder(frames)[::-1], frames]
        condition = ego_motion.detach() / self.pose_scale
        return SceneFlowOutput(complete_flow=self.flow_decoder(features, condition),
                               mask_logits=self.mask_decoder(features, condition))
