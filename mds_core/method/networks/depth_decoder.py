"""Monodepth2's depth decoder: sigmoid disparity at scales 0..3, and disparity -> depth."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mds_core.method.networks.layers import Conv3x3, ConvBlock, upsample_nearest
from mds_core.method.networks.resnet_encoder import ResnetEncoder

DECODER_CHANNELS = [16, 32, 64, 128, 256]


def disparity_to_depth(disparity: Tensor, min_depth: float, max_depth: float) -> Tensor:
    """``depth = 1 / (1/max + (1/min - 1/max) * s)`` for sigmoid output ``s``."""
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    return 1.0 / (min_disp + (max_disp - min_disp) * disparity)


class DepthDecoder(nn.Module):
    """U-Net decoder over encoder features; disparity ``(B, 1, H/2^s, W/2^s)`` for each scale."""

    def __init__(self, encoder_channels: list[int], num_scales: int = 4):
        super().__init__()
        self.num_scales = num_scales
        self.upconvs_0 = nn.ModuleList()
        self.upconvs_1 = nn.ModuleList()
        for i in range(4, -1, -1):
            in_ch = encoder_channels[-1] if i == 4 else DECODER_CHANNELS[i + 1]
            self.upconvs_0.append(ConvBlock(in_ch, DECODER_CHANNELS[i]))
            skip = encoder_channels[i - 1] if i > 0 else 0
            self.upconvs_1.append(ConvBlock(DECODER_CHANNELS[i] + skip, DECODER_CHANNELS[i]))
        self.dispconvs = nn.ModuleList(Conv3x3(DECODER_CHANNELS[s], 1) for s in range(num_scales))

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Returns disparities ordered by scale: ``[scale 0 (full res), scale 1, ...]``."""
        height, width = features[0].shape[-2] * 2, features[0].shape[-1] * 2
        outputs: dict[int, Tensor] = {}
        x = features[-1]
        for step, i in enumerate(range(4, -1, -1)):
            x = self.upconvs_0[step](x)
            size = features[i - 1].shape[-2:] if i > 0 else (height, width)
            x = upsample_nearest(x, size)
            if i > 0:
                x = torch.cat([x, features[i - 1]], dim=1)
            x = self.upconvs_1[step](x)
            if i < self.num_scales:
                outputs[i] = torch.sigmoid(self.dispconvs[i](x))
        return [outputs[s] for s in range(self.num_scales)]


class DepthNet(nn.Module):
    """Depth network: ResNet encoder + Monodepth2 decoder over one RGB image."""

    def __init__(self, encoder: str = "resnet50", num_scales: int = 4):
        super().__init__()
        self.encoder = ResnetEncoder(encoder, in_channels=3)
        self.decoder = DepthDecoder(self.encoder.channels, num_scales)

    def forward(self, image: Tensor) -> list[Tensor]:
        return self.decoder(self.encoder(image))
