"""The full-resolution U-Net decoder of the mask network (supplementary Table 7), also used for
Dynamo-Depth's scene-flow and motion-mask decoders.

From the deepest encoder feature up: per level a conv block, a transposed convolution that
doubles the resolution (none where the encoder did not halve it, e.g. a dilated last stage), the
encoder's skip feature concatenated, a second conv block; a 3x3 convolution gives the output
channels at the input resolution. ``condition_channels`` extra channels (e.g. the ego-motion,
broadcast over space) can be concatenated to the input of every level: given only at the deepest
feature, a condition barely reaches the output through four upsampling levels whose skip
features dominate (at initialisation its effect shrinks about tenfold per level).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mds_core.method.networks.layers import Conv3x3, ConvBlock

DECODER_CHANNELS = [16, 32, 64, 128, 256]


class UNetDecoder(nn.Module):
    """``out_channels`` maps at full resolution from the five encoder features."""

    def __init__(self, encoder_channels: list[int], reductions: list[int], out_channels: int,
                 condition_channels: int = 0):
        super().__init__()
        self.condition_channels = condition_channels
        self.blocks_0 = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        self.blocks_1 = nn.ModuleList()
        for i in range(4, -1, -1):
            in_ch = (encoder_channels[-1] if i == 4 else DECODER_CHANNELS[i + 1]) + condition_channels
            out_ch = DECODER_CHANNELS[i]
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
        self.head = Conv3x3(DECODER_CHANNELS[0], out_channels)

    def forward(self, features: list[Tensor], condition: Tensor | None = None) -> Tensor:
        """``condition``: ``(B, condition_channels)`` values broadcast over every level's input."""
        if self.condition_channels and (condition is None or condition.shape[-1] != self.condition_channels):
            raise ValueError(f"this decoder needs a (B, {self.condition_channels}) condition")
        x = features[-1]
        for step, i in enumerate(range(4, -1, -1)):
            if self.condition_channels:
                x = torch.cat([x, condition[:, :, None, None].expand(-1, -1, *x.shape[-2:]).to(x.dtype)], dim=1)
            x = self.upsamplers[step](self.blocks_0[step](x))
            if i > 0:
                x = torch.cat([x, features[i - 1]], dim=1)
            x = self.blocks_1[step](x)
        return self.head(x)
