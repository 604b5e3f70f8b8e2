"""Rigid transforms in SE(3): axis-angle parameterisation of the pose decoder's output.

A pose vector is ``(axis-angle v, translation t)``. Following Monodepth2,
``T = Trans(t) * R(v)`` and its exact inverse is ``R^T * Trans(-t)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

AXIS_ANGLE_EPS = 1e-7


def _skew(a: Tensor) -> Tensor:
    """``[a]_x`` for ``(..., 3)`` vectors, as ``(..., 3, 3)`` matrices."""
    zero = torch.zeros_like(a[..., 0])
    ax, ay, az = a.unbind(-1)
    return torch.stack(
        [
            torch.stack([zero, -az, ay], dim=-1),
            torch.stack([az, zero, -ax], dim=-1),
            torch.stack([-ay, ax, zero], dim=-1),
        ],
        dim=-2,
    )


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rodrigues' formula: ``R = cos(th) I + (1 - cos(th)) a a^T + sin(th) [a]_x``.

    ``th = |v|`` and ``a = v / (th + 1e-7)``, so ``v = 0`` gives exactly the identity.
    Accepts ``(..., 3)`` and returns ``(..., 3, 3)``.
    """
    theta = torch.linalg.vector_norm(axis_angle, dim=-1, keepdim=True)
    axis = axis_angle / (theta + AXIS_ANGLE_EPS)
    cos = torch.cos(theta)[..., None]
    sin = torch.sin(theta)[..., None]
    eye = torch.eye(3, device=axis_angle.device, dtype=axis_angle.dtype)
    outer = axis[..., :, None] * axis[..., None, :]
    return cos * eye + (1.0 - cos) * outer + sin * _skew(axis)


def _compose(rotation: Tensor, translation: Tensor) -> Tensor:
    transform = torch.zeros(
        rotation.shape[:-2] + (4, 4), device=rotation.device, dtype=rotation.dtype
    )
    transform[..., :3, :3] = rotation
    transform[..., :3, 3] = translation
    transform[..., 3, 3] = 1.0
    return transform


def pose_vector_to_transform(axis_angle: Tensor, translation: Tensor, invert: bool = False) -> Tensor:
    """``(..., 3)`` axis-angle and translation to ``(..., 4, 4)`` transforms.

    ``invert=False`` gives ``T = Trans(t) R``; ``invert=True`` gives its exact inverse
    ``R^T Trans(-t)`` (the transform used for a source frame that precedes the target).

    Computed in at least fp32 and outside autocast whatever the caller runs under: the poses of
    networks run in bf16 or fp16 enter the warp as fp32 transforms (in bf16 a rotation's entries
    carry about 3 significant digits, which moves a point 30 m away by several centimetres).
    """
    dtype = torch.promote_types(axis_angle.dtype, torch.float32)
    with torch.autocast(axis_angle.device.type, enabled=False):
        axis_angle, translation = axis_angle.to(dtype), translation.to(dtype)
        rotation = axis_angle_to_matrix(axis_angle)
        if not invert:
            return _compose(rotation, translation)
        rotation_t = rotation.transpose(-1, -2)
        return _compose(rotation_t, -(rotation_t @ translation[..., None])[..., 0])


def invert_transform(transform: Tensor) -> Tensor:
    """Exact inverse of ``(..., 4, 4)`` rigid transforms."""
    rotation_t = transform[..., :3, :3].transpose(-1, -2)
    translation = transform[..., :3, 3]
    return _compose(rotation_t, -(rotation_t @ translation[..., None])[..., 0])


def transform_points(transform: Tensor, points: Tensor) -> Tensor:
    """Eq. (5), first half: ``x' = R x + t`` for ``(B, 4, 4)`` transforms and ``(..., B, 3, H, W)`` points."""
    rotated = torch.einsum("bij,...bjhw->...bihw", transform[:, :3, :3], points)
    return rotated + transform[:, :3, 3, None, None]
