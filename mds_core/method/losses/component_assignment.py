"""Per-component reprojection: every rigid motion is judged on the pixels it explains best.

A learning aid, not in the paper (docs/decomposition-ladder.md). In eq. (6) a component's
transform only receives gradient through the pixels its mask covers, and a mask only grows
where its transform already explains the image: a component that starts with no mass (the
background prior, straight-through masks) never learns a motion. Here each of the K transforms
also warps the source on its own (a single rigid motion per component) and, per pixel, the
best of them is kept:

* :func:`component_errors`: ``pe_k(p)``, the photometric error of the source warped by ``T_k``
  alone (eq. 8 with ``M_k = 1``), ``(B, K, H, W)``;
* the *component minimum* ``mean_p min_k pe_k(p)`` (with the objective's per-pixel minimum over
  sources and auto-masking) trains every transform on the pixels where it is the best
  hypothesis, winner-take-all, independently of the masks;
* the *mask assignment* ``mean_p -log M_{k*}(p)`` with ``k* = argmin_k pe_k(p)`` (detached),
  over the pixels that auto-masking keeps, teaches the masks which motion explains each pixel.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mds_core.method.decomposition import ComponentMotion
from mds_core.method.losses.photometric import photometric_error
from mds_core.method.warping import warp_source

ASSIGNMENT_EPS = 1e-7


def component_errors(source: Tensor, target: Tensor, depth: Tensor, intrinsics: Tensor, inv_intrinsics: Tensor,
                     transforms: Tensor, ssim_weight: float) -> Tensor:
    """``(B, K, H, W)`` photometric error of ``source`` warped by each of the K ``transforms`` alone."""
    ones = torch.ones_like(depth)
    errors = []
    for k in range(transforms.shape[1]):
        single = ComponentMotion(masks=ones, transforms=transforms[:, k : k + 1])
        warped = warp_source(source, depth, intrinsics, single, inv_intrinsics).image
        errors.append(photometric_error(warped, target, ssim_weight))
    return torch.cat(errors, dim=1)


def mask_assignment(soft_masks: Tensor, best: Tensor, keep: Tensor) -> Tensor:
    """Mean of ``-log M_{best}`` over pixels where ``keep`` is 1; ``best`` is ``(B, H, W)`` long."""
    chosen = soft_masks.gather(1, best[:, None]).clamp_min(ASSIGNMENT_EPS)
    weight = keep.to(soft_masks.dtype)
    return -(chosen.log() * weight).sum() / weight.sum().clamp_min(1.0)
