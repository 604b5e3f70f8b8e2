"""MonoDepthSeg: the depth network and the pose+mask network, composed (paper Fig. 2).

Frame-order convention (Monodepth2): each (target, source) pair enters the pose+mask network
in temporal order -- ``(I_-1, I_0)`` for a previous source and ``(I_0, I_+1)`` for a next one --
always with the target's depth as the seventh channel. The K predicted transforms map points
of the earlier frame's camera into the later frame's; the warp needs target -> source, so the
transforms of a previous source are inverted (exactly: ``R^T Trans(-t)``). The masks always
live on the target's pixel grid.

With ``num_components = 1`` the mask is identically 1 and the model is Monodepth2 with a
depth-conditioned pose network: the baseline of every comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mds_core.config import ModelConfig
from mds_core.method.decomposition import ComponentMotion, depth_ordered_softmax, plain_softmax
from mds_core.method.geometry import pose_vector_to_transform
from mds_core.method.networks import DepthNet, PoseMaskNet, disparity_to_depth


@dataclass
class SourceMotion:
    """The decomposition predicted for one source frame."""

    offset: int  # temporal offset of the source frame relative to the target
    motion: ComponentMotion  # masks and target->source transforms (eq. 6)
    mask_logits: Tensor  # (B, K, H, W) decoder output M'
    component_transforms: Tensor  # (B, K, 4, 4) as predicted: earlier frame -> later frame


@dataclass
class ModelOutput:
    """Everything the losses, the logger and the predictor need from one forward pass."""

    disparities: list[Tensor]  # sigmoid disparity per scale, (B, 1, H/2^s, W/2^s)
    depth: Tensor  # (B, 1, H, W) depth at scale 0
    sources: list[SourceMotion]


class MonoDepthSeg(nn.Module):
    """Depth network + pose/mask network with a shared encoder."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.depth_net = DepthNet(config.depth_encoder, config.num_scales)
        self.pose_mask_net = PoseMaskNet(config.pose_mask_encoder, config.num_components, config.pose_scale)

    def to_masks(self, logits: Tensor) -> Tensor:
        if self.config.mask_regulariser == "depth_ordering":
            return depth_ordered_softmax(logits)
        return plain_softmax(logits)

    def predict_disparity(self, image: Tensor) -> list[Tensor]:
        return self.depth_net(image)

    def to_depth(self, disparity: Tensor) -> Tensor:
        return disparity_to_depth(disparity, self.config.min_depth, self.config.max_depth)

    def predict_motion(self, target: Tensor, sources: Tensor, offsets: list[int], disparity: Tensor) -> list[SourceMotion]:
        """Decompose the motion between ``target`` and each of ``sources`` ``(B, S, 3, H, W)``.

        All S pairs go through the pose+mask network as one batch.
        """
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
            axis_angle, translation = out.axis_angle[rows], out.translation[rows]
            predicted = pose_vector_to_transform(axis_angle, translation)
            to_source = pose_vector_to_transform(axis_angle, translation, invert=offset < 0)
            logits = out.mask_logits[rows]
            results.append(
                SourceMotion(
                    offset=offset,
                    motion=ComponentMotion(masks=self.to_masks(logits), transforms=to_source),
                    mask_logits=logits,
                    component_transforms=predicted,
                )
            )
        return results

    def forward(self, images: Tensor, offsets: list[int]) -> ModelOutput:
        """``images``: ``(B, 1 + S, 3, H, W)`` network inputs, target first (see :class:`Sample`)."""
        if images.shape[1] != 1 + len(offsets):
            raise ValueError(f"expected {1 + len(offsets)} frames per sample, got {images.shape[1]}")
        target = images[:, 0]
        disparities = self.predict_disparity(target)
        sources = self.predict_motion(target, images[:, 1:], offsets, disparities[0])
        return ModelOutput(disparities=disparities, depth=self.to_depth(disparities[0]), sources=sources)
