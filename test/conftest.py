"""Shared fixtures: small deterministic tensors and tiny configs (CPU, tiny resolutions)."""

from __future__ import annotations

import torch

torch.set_num_threads(max(1, torch.get_num_threads()))


def kitti_like_intrinsics(width: int, height: int, batch: int = 1) -> torch.Tensor:
    k = torch.tensor([[0.58 * width, 0.0, 0.5 * width], [0.0, 1.92 * height, 0.5 * height], [0.0, 0.0, 1.0]])
    return k.expand(batch, 3, 3).clone()


def textured_image(height: int, width: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A smooth random texture in [0, 1] (low-pass noise), (B, 3, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(2, height // 4), max(2, width // 4), generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)
