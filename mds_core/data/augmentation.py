"""Monodepth2 training augmentation: one draw per sample, applied identically to every frame.

Colour jitter changes only the images that enter the networks; the loss images stay clean.
A horizontal flip applies to every frame (loss images too) and mirrors the principal point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from mds_core.config import AugmentationConfig


@dataclass
class AugmentationDraw:
    """The random parameters of one sample's augmentation (shared by all its frames)."""

    flip: bool
    jitter: bool
    brightness: float
    contrast: float
    saturation: float
    hue: float

    @classmethod
    def sample(cls, config: AugmentationConfig, rng: np.random.Generator) -> AugmentationDraw:
        # Always draw every number so that the stream does not depend on the outcome.
        flip = rng.random() < config.flip_probability
        jitter = rng.random() < config.colour_jitter_probability
        brightness = rng.uniform(1 - config.brightness, 1 + config.brightness)
        contrast = rng.uniform(1 - config.contrast, 1 + config.contrast)
        saturation = rng.uniform(1 - config.saturation, 1 + config.saturation)
        hue = rng.uniform(-config.hue, config.hue)
        return cls(bool(config.enabled and flip), bool(config.enabled and jitter),
                   brightness, contrast, saturation, hue)


def colour_jitter(images: Tensor, draw: AugmentationDraw) -> Tensor:
    """Brightness, contrast, saturation, hue -- the same factors for every frame of ``images``."""
    if not draw.jitter:
        return images
    out = TF.adjust_brightness(images, draw.brightness)
    out = TF.adjust_contrast(out, draw.contrast)
    out = TF.adjust_saturation(out, draw.saturation)
    out = TF.adjust_hue(out, draw.hue)
    return out.clamp(0.0, 1.0)


def flip_horizontally(images: Tensor, intrinsics: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror ``(..., 3, H, W)`` frames and the principal point (``cx' = W - 1 - cx``)."""
    width = images.shape[-1]
    flipped_k = intrinsics.clone()
    flipped_k[0, 2] = (width - 1) - intrinsics[0, 2]
    return torch.flip(images, dims=[-1]), flipped_k
