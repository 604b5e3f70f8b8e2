"""Scene decomposition into K rigidly moving components (paper section 3.1-3.2).

* :func:`depth_ordered_softmax` is eq. (3): mask logits weighted by their depth order
  ``d_i = i`` before a softmax over the K components.
* :class:`ComponentMotion` holds K masks and K rigid transforms and applies eq. (6):
  ``x' = sum_i M_i(p) (R_i x + t_i)`` -- the whole transformed point is weighted, not only
  the rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def depth_order_weights(num_components: int, *, device=None, dtype=torch.float32) -> Tensor:
    """The scalar order ``d_i = i`` (``i = 1..K``) of each component, shaped ``(1, K, 1, 1)``."""
    order = torch.arange(1, num_components + 1, device=device, dtype=dtype)
    return order.view(1, num_components, 1, 1)


def depth_ordered_softmax(logits: Tensor) -> Tensor:
    """Eq. (3): ``M_i(p) = exp(d_i M'_i(p)) / sum_j exp(d_j M'_j(p))`` over ``(B, K, H, W)`` logits."""
    weights = depth_order_weights(logits.shape[1], device=logits.device, dtype=logits.dtype)
    return torch.softmax(logits * weights, dim=1)


def plain_softmax(logits: Tensor) -> Tensor:
    """Softmax over components without depth ordering (used with the mask-smoothness regulariser)."""
    return torch.softmax(logits, dim=1)


@dataclass
class ComponentMotion:
    """K soft masks and K rigid transforms mapping target-frame points into a source frame.

    Attributes:
        masks: ``(B, K, H, W)`` soft assignment of each target pixel; sums to 1 over K (eq. 2).
        transforms: ``(B, K, 4, 4)`` target-to-source rigid transforms ``T_i = [R_i, t_i]``.
    """

    masks: Tensor
    transforms: Tensor

    @property
    def num_components(self) -> int:
        return self.masks.shape[1]

    def transform_points(self, points: Tensor) -> Tensor:
        """Eq. (6): ``x' = sum_i M_i(p) (R_i x + t_i)`` for ``(B, 3, H, W)`` target points."""
        rotation = self.transforms[:, :, :3, :3]
        translation = self.transforms[:, :, :3, 3]
        moved = torch.einsum("bkij,bjhw->bkihw", rotation, points)
        moved = moved + translation[:, :, :, None, None]
        return (self.masks[:, :, None] * moved).sum(dim=1)
