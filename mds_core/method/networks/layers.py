"""Building blocks shared by the decoders (Monodepth2 style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Conv3x3(nn.Sequential):
    """Reflection-padded 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.ReflectionPad2d(1), nn.Conv2d(in_channels, out_channels, 3))


def elu_by_exp(x: Tensor) -> Tensor:
    """``ELU(x) = max(x, exp(min(x, 0)) - 1)`` (alpha 1): equal to ``F.elu`` within 6e-8 absolute
    (``exp(x) - 1`` instead of ``expm1``)."""
    return torch.maximum(x, x.clamp(max=0).exp_().sub_(1))


class _ELUByExp(torch.autograd.Function):
    """:func:`elu_by_exp` with its gradient written out: ``1`` where the output is positive, else
    ``output + 1`` (only the output is kept for the backward pass)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = elu_by_exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return grad * (out.clamp(max=0) + 1)


class ELU(nn.Module):
    """The ELU of Monodepth2's decoders. On CPU it is computed through ``exp``: the CPU ``expm1`` of
    ``F.elu`` is not vectorised and took a tenth of a training step; elsewhere it is ``F.elu``."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            return F.elu(x, inplace=True)  # exporters see the standard operator
        if torch.is_grad_enabled() and x.requires_grad:
            return _ELUByExp.apply(x)
        return elu_by_exp(x)


class ConvBlock(nn.Sequential):
    """Reflection-padded 3x3 convolution followed by ELU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(Conv3x3(in_channels, out_channels), ELU())


def upsample_nearest(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour upsampling to ``size`` (x2 for the usual stride-2 encoder levels)."""
    return F.interpolate(x, size=size, mode="nearest")


def resize_bilinear(values: Tensor, size: tuple[int, int]) -> Tensor:
    """``(..., C, h, w)`` maps resized to ``size`` bilinearly (``align_corners=False``, as the
    disparities are upsampled); unchanged when already that size."""
    if tuple(values.shape[-2:]) == tuple(size):
        return values
    return F.interpolate(values, size=size, mode="bilinear", align_corners=False)
