"""Photometric reconstruction loss (paper eq. 8) with Monodepth2's per-pixel minimum and auto-masking."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mds_core.method.losses.ssim import SSIMTerms, ssim_dissimilarity

AUTOMASK_NOISE_STD = 1e-5


class _PhotometricError(torch.autograd.Function):
    """:func:`photometric_error` of a ``prediction`` against a ``target`` that takes no gradient, with
    the gradient written out: ``dpe/dS = -a / (2 C)`` where ``0 <= (1 - S) / 2 <= 1`` (the clamp), else
    0, through :meth:`SSIMTerms.x_gradient`, plus ``(1 - a) / C * sign(prediction - target)``."""

    @staticmethod
    def forward(ctx, prediction: Tensor, target: Tensor, ssim_weight: float) -> Tensor:
        terms = SSIMTerms.compute(prediction, target)
        difference = prediction - target
        dissimilarity = torch.rsub(terms.similarity, 1.0).div_(2.0).clamp_(0.0, 1.0)
        l1 = difference.abs().mean(dim=-3, keepdim=True)
        ctx.ssim_weight = ssim_weight
        ctx.save_for_backward(difference, *terms.tensors())
        return ssim_weight * dissimilarity.mean(dim=-3, keepdim=True) + (1.0 - ssim_weight) * l1

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        difference, *saved = ctx.saved_tensors
        terms, ssim_weight, channels = SSIMTerms(*saved), ctx.ssim_weight, difference.shape[-3]
        in_range = (terms.similarity >= -1.0) & (terms.similarity <= 1.0)  # where the clamp passes
        grad_similarity = torch.where(in_range, grad * (-ssim_weight / (2 * channels)), 0.0)
        grad_prediction = terms.x_gradient(grad_similarity)
        grad_prediction.addcmul_(torch.sign(difference), grad, value=(1.0 - ssim_weight) / channels)
        return grad_prediction, None, None


def photometric_error(prediction: Tensor, target: Tensor, ssim_weight: float = 0.85) -> Tensor:
    """``pe = a * mean_c(clamp((1 - SSIM) / 2, 0, 1)) + (1 - a) * mean_c |I_t - I_hat|`` as ``(B, 1, H, W)``.

    ``prediction`` may carry leading dimensions, ``(..., B, C, H, W)``, to compare many images with
    one ``(B, C, H, W)`` target in one call (the target's SSIM statistics are then computed once);
    the result is then ``(..., B, 1, H, W)``.
    """
    if not target.requires_grad:
        return _PhotometricError.apply(prediction, target, ssim_weight)
    l1 = (target - prediction).abs().mean(dim=-3, keepdim=True)
    dssim = ssim_dissimilarity(prediction, target).mean(dim=-3, keepdim=True)
    return ssim_weight * dssim + (1.0 - ssim_weight) * l1


@dataclass
class ReprojectionLoss:
    """Per-pixel loss and what auto-masking decided."""

    per_pixel: Tensor  # (B, 1, H, W) loss to minimise
    automask: Tensor | None  # (B, 1, H, W) 1 where a warped source beat every un-warped source


def minimum_reprojection(
    reprojection_errors: Tensor,
    identity_errors: Tensor | None,
    use_minimum: bool = True,
) -> ReprojectionLoss:
    """Combine ``(B, S, H, W)`` reprojection errors across the S source frames.

    With ``identity_errors`` (the errors of the un-warped sources) this is Monodepth2's
    auto-masking: a little Gaussian noise (std 1e-5) breaks ties, and the per-pixel minimum is
    taken over identity and reprojection errors together, so pixels that look the same without
    any warp (static camera, objects moving with the camera) contribute no gradient.
    """
    if use_minimum:
        reprojection = reprojection_errors
    else:
        reprojection = reprojection_errors.mean(dim=1, keepdim=True)
    if identity_errors is None:
        per_pixel = reprojection.min(dim=1, keepdim=True).values
        return ReprojectionLoss(per_pixel=per_pixel, automask=None)
    if not use_minimum:
        identity_errors = identity_errors.mean(dim=1, keepdim=True)
    identity = identity_errors + torch.randn_like(identity_errors) * AUTOMASK_NOISE_STD
    combined = torch.cat([identity, reprojection], dim=1)
    values, indices = combined.min(dim=1, keepdim=True)
    automask = (indices >= identity.shape[1]).to(values.dtype)
    return ReprojectionLoss(per_pixel=values, automask=automask)
