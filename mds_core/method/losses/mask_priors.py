"""Priors on the K soft masks that help the decomposition learn (docs/decomposition-ladder.md).

Neither is in the paper; both are off by default (``loss.mask_sparsity_weight``,
``loss.mask_entropy_weight``).

* :func:`mask_sparsity`: the mean mass outside the background component,
  ``mean_p (1 - M_b(p)) = mean_p sum_{i != b} M_i(p)``: an L1 prior that most of the scene moves
  with the camera, so the other components must pay for every pixel they take (Dynamo-Depth's
  sparsity prior on its motion mask, applied to the K-way masks of eq. 3).
* :func:`mask_entropy`: the mean per-pixel entropy ``-sum_i M_i log M_i``, zero for one-hot
  masks: it pushes each pixel towards a single rigid motion, so that a soft mixture of K
  transforms cannot act as a per-pixel flow correction.
"""

from __future__ import annotations

from torch import Tensor

from mds_core.method.decomposition import BACKGROUND_COMPONENT

ENTROPY_EPS = 1e-7


def mask_sparsity(masks: Tensor) -> Tensor:
    """Mean of ``1 - M_b`` over ``(B, K, H, W)`` masks, with ``b`` the background component."""
    return (1.0 - masks[:, BACKGROUND_COMPONENT]).mean()


def mask_entropy(masks: Tensor) -> Tensor:
    """Mean over pixels of ``-sum_i M_i log(M_i + eps)`` for ``(B, K, H, W)`` masks."""
    return -(masks * (masks + ENTROPY_EPS).log()).sum(dim=1).mean()
