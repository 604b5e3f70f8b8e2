"""MonoDepthSeg's pose and mask network (paper section 3.4, supplementary Table 7).

One encoder over 7 channels -- the earlier frame, the later frame (RGB each) and the
target's depth estimate -- shared by two decoders:

* :class:`MaskDecoder`: a U-Net decoder with transposed-convolution upsampling and skip
  connections that returns K mask logits at the input resolution;
* :class:`PoseDecoder`: Table 7 (1x1 256 ReLU, 3x3 256 ReLU, 3x3 256 ReLU, 1x1 K*6), averaged
  over space and scaled by 0.01 -> K (axis-angle, translation) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mds_core.method.networks.layers import Conv3x3, ConvBlock
from mds_core.method.networks.resnet_encoder import ResnetEncoder

MASK_DECODER_CHANNELS = [16, 32, 64, 128, 256]
POSE_DECODER_CHANNELS = 256


@dataclass
class PoseMaskOutput:
    """Raw network outputs for one frame pair.

    Attributes:
        mask_logits: ``(B, K, H, W)`` logits ``M'`` (before the softmax of eq. 3).
        axis_angle: ``(B, K, 3)`` rotation of each component (already scaled by 0.01).
        translation: ``(B, K, 3)`` translation of each component (already scaled by 0.01).
    """

    mask_logits: Tensor
    axis_angle: Tensor
    translation: Tensor


class MaskDecoder(nn.Module):
    """K-channel mask logits at full resolution from the shared encoder's features."""

    def __init__(self, encoder_channels: list[int], reductions: list[int], num_components: int):
        super().__init__()
        self.blocks_0 = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        self.blocks_1 = nn.ModuleList()
        for i in range(4, -1, -1):
            in_ch = encoder_channels[-1] if i == 4 else MASK_DECODER_CHANNELS[i + 1]
            out_ch = MASK_DECODER_CHANNELS[i]
            self.blocks_0.append(ConvBlock(in_ch, out_ch))
            next_reduction = reductions[i - 1] if i > 0 else 1
            factor = reductions[i] // next_reduction
            if factor == 2:
                self.upsamplers.append(nn.ConvTranspose2d(out_ch, out_ch, 4, stride=2, padding=1))
            elif factor == 1:
                self.upsamplers.append(nn.Identity())
            else:
                raise ValueError(f"unsupported encoder reductions {reductions}")
            skip = encoder_channels[i - 1] if i > 0 else 0
            self.blocks_1.append(ConvBlock(out_ch + skip, out_ch))
        self.head = Conv3x3(MASK_DECODER_CHANNELS[0], num_components)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = features[-1]
        for step, i in enumerate(range(4, -1, -1)):
            x = self.upsamplers[step](self.blocks_0[step](x))
            if i > 0:
                x = torch.cat([x, features[i - 1]], dim=1)
            x = self.blocks_1[step](x)
        return self.head(x)


class PoseDecoder(nn.Module):
    """Supplementary Table 7: K 6-DoF poses from the deepest shared feature map."""

    def __init__(self, encoder_channels: int, num_components: int, pose_scale: float = 0.01):
        super().__init__()
        self.num_components = num_components
        self.pose_scale = pose_scale
        c = POSE_DECODER_CHANNELS
        self.net = nn.Sequential(
            nn.Conv2d(encoder_channels, c, 1), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c, 6 * num_components, 1),
        )

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(feature).mean(dim=(2, 3)) * self.pose_scale
        out = out.view(-1, self.num_components, 6)
        return out[..., :3], out[..., 3:]


class PoseMaskNet(nn.Module):
    """Shared 7-channel encoder + mask decoder + pose decoder.

    Args:
        backbone: ``"resnet18"``, ``"resnet50"``, or ``"deeplabv3_resnet50"`` (a ResNet50 whose
            last stage is dilated, output stride 16, so that torchvision's DeepLabV3 backbone
            weights fit; Table 7's decoder then runs at 1/16 as in the paper).
    """

    def __init__(self, backbone: str = "resnet50", num_components: int = 5, pose_scale: float = 0.01):
        super().__init__()
        deeplab = backbone == "deeplabv3_resnet50"
        self.encoder = ResnetEncoder("resnet50" if deeplab else backbone, in_channels=7, dilate_last=deeplab)
        self.mask_decoder = MaskDecoder(self.encoder.channels, self.encoder.reductions, num_components)
        self.pose_decoder = PoseDecoder(self.encoder.channels[-1], num_components, pose_scale)

    def forward(self, earlier: Tensor, later: Tensor, depth_input: Tensor) -> PoseMaskOutput:
        """Frames in temporal order, plus the target's normalised disparity ``(B, 1, H, W)``."""
        features = self.encoder(torch.cat([earlier, later, depth_input], dim=1))
        axis_angle, translation = self.pose_decoder(features[-1])
        return PoseMaskOutput(self.mask_decoder(features), axis_angle, translation)
