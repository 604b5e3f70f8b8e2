"""Monodepth2's SSIM: reflection padding 1, 3x3 average-pool window, C1 = 0.01^2, C2 = 0.03^2.

``x`` may carry leading dimensions in front of ``y``'s ``(B, C, H, W)`` (many predictions compared
with one target): the target's statistics are then computed once for all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

C1 = 0.01**2
C2 = 0.03**2


def reflection_pad(x: Tensor) -> Tensor:
    """Pad the last two dimensions of ``(..., C, H, W)`` by one pixel, mirrored (Monodepth2's SSIM)."""
    flat = x.reshape(-1, *x.shape[-3:])
    return F.pad(flat, (1, 1, 1, 1), mode="reflect").view(*x.shape[:-2], x.shape[-2] + 2, x.shape[-1] + 2)


def box_mean_3x3(x: Tensor) -> Tensor:
    """The mean of every 3x3 window of ``(..., H, W)``, ``(..., H - 2, W - 2)``: ``avg_pool2d(x, 3, 1)``.

    Computed as two separable sums of shifted views, which on CPU is several times faster than
    ``avg_pool2d``; equal to it up to float rounding.
    """
    rows = x[..., :, :-2] + x[..., :, 1:-1] + x[..., :, 2:]
    return (rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]) / 9.0


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-pixel, per-channel structural similarity of images in [0, 1].

    ``y``: ``(B, C, H, W)``; ``x``: ``(..., B, C, H, W)``; the result has ``x``'s shape.
    """
    x = reflection_pad(x)
    y = reflection_pad(y)
    mu_y = box_mean_3x3(y)
    sigma_y = box_mean_3x3(y * y) - mu_y * mu_y
    mu_x, mean_xx, mean_xy = box_mean_3x3(torch.stack(torch.broadcast_tensors(x, x * x, x * y))).unbind(0)
    sigma_x = mean_xx - mu_x * mu_x
    sigma_xy = mean_xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + C1) * (2 * sigma_xy + C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + C1) * (sigma_x + sigma_y + C2)
    return numerator / denominator


def ssim_dissimilarity(x: Tensor, y: Tensor) -> Tensor:
    """The SSIM loss term ``clamp((1 - SSIM) / 2, 0, 1)``: 0 for identical images (shapes as :func:`ssim`)."""
    return ((1.0 - ssim(x, y)) / 2.0).clamp(0.0, 1.0)
