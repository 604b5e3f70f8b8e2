"""Building blocks shared by the decoders (Monodepth2 style)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Conv3x3(nn.Sequential):
    """Reflection-padded 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.ReflectionPad2d(1), nn.Conv2d(in_channels, out_channels, 3))


class ConvBlock(nn.Sequential):
    """Reflection-padded 3x3 convolution followed by ELU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(Conv3x3(in_channels, out_channels), nn.ELU(inplace=True))


def upsample_nearest(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour upsampling to ``size`` (x2 for the usual stride-2 encoder levels)."""
    return F.interpolate(x, size=size, mode="nearest")
