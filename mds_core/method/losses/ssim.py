"""Monodepth2's SSIM: reflection padding 1, 3x3 average-pool window, C1 = 0.01^2, C2 = 0.03^2.

``x`` may carry leading dimensions in front of ``y``'s ``(B, C, H, W)`` (many predictions compared
with one target): the target's statistics are then computed once for all of them.

The 3x3 means are two separable sums of shifted views (several times faster on CPU than
``avg_pool2d``, equal up to float rounding). :class:`SSIMTerms` also writes out the gradient with
respect to ``x``, for the photometric error's autograd function
(:func:`mds_core.method.losses.photometric.photometric_error`): recorded op by op, autograd would
run several times the operations and the memory traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

C1 = 0.01**2
C2 = 0.03**2


def reflection_pad(x: Tensor) -> Tensor:
    """Pad the last two dimensions of ``(..., C, H, W)`` by one pixel, mirrored (Monodepth2's SSIM)."""
    flat = x.reshape(-1, *x.shape[-3:])
    return F.pad(flat, (1, 1, 1, 1), mode="reflect").view(*x.shape[:-2], x.shape[-2] + 2, x.shape[-1] + 2)


def reflection_pad_adjoint(grad: Tensor) -> Tensor:
    """The gradient of :func:`reflection_pad`'s input from the gradient of its output (which it updates
    in place): each mirrored border row and column is added back onto the row or column it copies."""
    grad[..., 2, :] += grad[..., 0, :]
    grad[..., -3, :] += grad[..., -1, :]
    grad[..., :, 2] += grad[..., :, 0]
    grad[..., :, -3] += grad[..., :, -1]
    return grad[..., 1:-1, 1:-1]


def box_sum_3x3(x: Tensor) -> Tensor:
    """The sum of every 3x3 window of ``(..., H, W)``, ``(..., H - 2, W - 2)``, in two separable passes."""
    rows = (x[..., :, :-2] + x[..., :, 1:-1]).add_(x[..., :, 2:])
    return (rows[..., :-2, :] + rows[..., 1:-1, :]).add_(rows[..., 2:, :])


def box_mean_3x3(x: Tensor) -> Tensor:
    """The mean of every 3x3 window, ``avg_pool2d(x, 3, 1)`` (several times faster on CPU, equal up to rounding)."""
    return box_sum_3x3(x).div_(9.0)


def _three_sum_adjoint(grad: Tensor, dim: int) -> Tensor:
    """The adjoint of the valid 3-sum ``y[i] = x[i] + x[i+1] + x[i+2]`` along ``dim`` (length n -> n + 2):
    ``x[j] = y[j] + y[j-1] + y[j-2]``, terms outside ``y`` left out (no zero-padded copy)."""
    n = grad.shape[dim]
    if n < 3:
        pad = [0, 0] * (grad.dim() - 1 - dim % grad.dim()) + [2, 2]
        padded = F.pad(grad, pad)
        return padded.narrow(dim, 0, n + 2) + padded.narrow(dim, 1, n + 2) + padded.narrow(dim, 2, n + 2)
    shape = list(grad.shape)
    shape[dim] = n + 2
    out = grad.new_empty(shape)

    def y(start: int, length: int = 1) -> Tensor:
        return grad.narrow(dim, start, length)

    def x(start: int, length: int = 1) -> Tensor:
        return out.narrow(dim, start, length)

    x(0).copy_(y(0))
    torch.add(y(0), y(1), out=x(1))
    torch.add(y(2, n - 2), y(1, n - 2), out=x(2, n - 2)).add_(y(0, n - 2))
    torch.add(y(n - 1), y(n - 2), out=x(n))
    x(n + 1).copy_(y(n - 1))
    return out


def box_sum_3x3_adjoint(grad: Tensor) -> Tensor:
    """The gradient of :func:`box_sum_3x3`'s input: the window sum of ``grad`` zero-padded by 2,
    computed as the adjoint of each separable 3-sum."""
    return _three_sum_adjoint(_three_sum_adjoint(grad, -1), -2)


@dataclass
class SSIMTerms:
    """The SSIM ``S`` of ``x`` against ``y`` and the intermediate terms its gradient needs.

    With the window means ``mu``, ``E[xx]``, ``E[xy]`` and ``n1 = 2 mu_x mu_y + C1``,
    ``n2 = 2 sigma_xy + C2``, ``d1 = mu_x^2 + mu_y^2 + C1``, ``d2 = sigma_x + sigma_y + C2``,
    ``S = n1 n2 / (d1 d2)``::

        dS/dmu_x  = (2 mu_y (n2 - n1) + 2 mu_x S (d1 - d2)) / (d1 d2)
        dS/dE[xx] = -S / d2
        dS/dE[xy] = 2 n1 / (d1 d2)

    and each window mean passes its gradient back through the adjoint of the window mean (the
    window sum of the zero-padded gradient, divided by 9; ``E[xx]`` and ``E[xy]`` then through
    ``2 x`` and ``y``), then through the adjoint of the reflection padding.
    """

    x_padded: Tensor
    y_padded: Tensor
    mu_x: Tensor
    mu_y: Tensor
    n1: Tensor
    n2: Tensor
    d1: Tensor
    d2: Tensor
    denominator: Tensor
    similarity: Tensor

    @classmethod
    def compute(cls, x: Tensor, y: Tensor) -> SSIMTerms:
        """The expressions of :func:`ssim`, without autograd, the large temporaries updated in place."""
        with torch.no_grad():
            x_padded, y_padded = reflection_pad(x), reflection_pad(y)
            mu_y = box_mean_3x3(y_padded)
            sigma_y = box_mean_3x3(y_padded * y_padded) - mu_y * mu_y
            mu_x = box_mean_3x3(x_padded)
            sigma_x = box_mean_3x3(x_padded * x_padded).addcmul_(mu_x, mu_x, value=-1)
            sigma_xy = box_mean_3x3(x_padded * y_padded).addcmul_(mu_x, mu_y, value=-1)
            n1 = torch.addcmul(mu_x.new_tensor(C1), mu_x, mu_y, value=2)
            n2 = sigma_xy.mul_(2).add_(C2)
            d1 = torch.addcmul(mu_y * mu_y + C1, mu_x, mu_x)
            d2 = sigma_x.add_(sigma_y + C2)
            denominator = d1 * d2
            similarity = torch.mul(n1, n2).div_(denominator)
        return cls(x_padded, y_padded, mu_x, mu_y, n1, n2, d1, d2, denominator, similarity)

    def tensors(self) -> list[Tensor]:
        """The terms in field order (``SSIMTerms(*terms.tensors())`` rebuilds them)."""
        return [getattr(self, f.name) for f in fields(self)]

    def x_gradient(self, grad: Tensor) -> Tensor:
        """``dL/dx`` from ``grad = dL/dS`` (the class docstring's derivatives)."""
        with torch.no_grad():
            scaled = grad / self.denominator
            # the derivatives times the incoming gradient and the 1/9 of the window means, whose
            # adjoints are then window sums
            grad_mu = torch.sub(self.d1, self.d2).mul_(self.similarity).mul_(self.mu_x)
            grad_mu.addcmul_(torch.sub(self.n2, self.n1), self.mu_y).mul_(scaled).mul_(2 / 9)
            grad_xx = torch.mul(grad, self.similarity).div_(self.d2).mul_(-1 / 9)
            grad_xy = torch.mul(self.n1, scaled).mul_(2 / 9)
            grad_padded = box_sum_3x3_adjoint(grad_mu)
            grad_padded.addcmul_(self.x_padded, box_sum_3x3_adjoint(grad_xx), value=2)
            grad_padded.addcmul_(self.y_padded, box_sum_3x3_adjoint(grad_xy))
            return reflection_pad_adjoint(grad_padded)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-pixel, per-channel structural similarity of images in [0, 1], recorded by autograd.

    ``y``: ``(B, C, H, W)``; ``x``: ``(..., B, C, H, W)``; the result has ``x``'s shape.
    """
    x, y = reflection_pad(x), reflection_pad(y)
    mu_x, mu_y = box_mean_3x3(x), box_mean_3x3(y)
    sigma_x = box_mean_3x3(x * x) - mu_x * mu_x
    sigma_y = box_mean_3x3(y * y) - mu_y * mu_y
    sigma_xy = box_mean_3x3(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + C1) * (2 * sigma_xy + C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + C1) * (sigma_x + sigma_y + C2)
    return numerator / denominator


def ssim_dissimilarity(x: Tensor, y: Tensor) -> Tensor:
    """The SSIM loss term ``clamp((1 - SSIM) / 2, 0, 1)``: 0 for identical images (shapes as :func:`ssim`)."""
    return ((1.0 - ssim(x, y)) / 2.0).clamp(0.0, 1.0)
