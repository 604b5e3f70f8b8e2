"""Monodepth2's SSIM: reflection padding 1, 3x3 average-pool window, C1 = 0.01^2, C2 = 0.03^2."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

C1 = 0.01**2
C2 = 0.03**2


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-pixel, per-channel structural similarity of ``(B, C, H, W)`` images in [0, 1]."""
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y = F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x * mu_x
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y * mu_y
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + C1) * (2 * sigma_xy + C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + C1) * (sigma_x + sigma_y + C2)
    return numerator / denominator


def ssim_dissimilarity(x: Tensor, y: Tensor) -> Tensor:
    """The SSIM loss term ``clamp((1 - SSIM) / 2, 0, 1)``: 0 for identical images."""
    return ((1.0 - ssim(x, y)) / 2.0).clamp(0.0, 1.0)
