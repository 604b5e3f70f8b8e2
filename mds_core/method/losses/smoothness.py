"""Edge-aware smoothness (Monodepth2), for disparity and, as an alternative regulariser, masks."""

from __future__ import annotations

import torch
from torch import Tensor


def edge_aware_smoothness(values: Tensor, image: Tensor) -> Tensor:
    """``mean(|dx v| exp(-mean_c |dx I|)) + mean(|dy v| exp(-mean_c |dy I|))``.

    ``values``: ``(B, C, H, W)`` (gradients averaged over C), ``image``: ``(B, 3, H, W)``.
    """
    dx = (values[..., :, :-1] - values[..., :, 1:]).abs()
    dy = (values[..., :-1, :] - values[..., 1:, :]).abs()
    image_dx = (image[..., :, :-1] - image[..., :, 1:]).abs().mean(dim=1, keepdim=True)
    image_dy = (image[..., :-1, :] - image[..., 1:, :]).abs().mean(dim=1, keepdim=True)
    return (dx * torch.exp(-image_dx)).mean() + (dy * torch.exp(-image_dy)).mean()


def disparity_smoothness(disparity: Tensor, image: Tensor) -> Tensor:
    """Edge-aware smoothness of mean-normalised disparity ``d / (mean(d) + 1e-7)``."""
    mean = disparity.mean(dim=(2, 3), keepdim=True)
    return edge_aware_smoothness(disparity / (mean + 1e-7), image)
