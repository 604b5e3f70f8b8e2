"""Window means over the image plane: a rigid object moves its neighbouring pixels alike, while one
pixel's photometric error or flow is noisy (aliasing, repeated texture). Used by the per-component
assignment and by the motion evidence."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def window_mean(values: Tensor, window: int) -> Tensor:
    """The mean of ``(..., H, W)`` values over the ``window`` x ``window`` neighbourhood of each
    pixel, clipped at the image border (``avg_pool2d`` with ``count_include_pad=False``), as
    separable running sums (``avg_pool2d``'s CPU kernel is several times slower); equal to it up to
    float rounding."""
    radius = window // 2
    height, width = values.shape[-2:]

    def box(x: Tensor) -> Tensor:  # zero-padded window sums along the last two dimensions
        x = F.pad(x, (radius + 1, radius)).cumsum(dim=-1)
        x = x[..., window:] - x[..., :-window]
        x = F.pad(x, (0, 0, radius + 1, radius)).cumsum(dim=-2)
        return x[..., window:, :] - x[..., :-window, :]

    counts = box(values.new_ones(height, width, dtype=torch.float64))
    return (box(values.double()) / counts).to(values.dtype)  # running sums in float64: no drift along rows
