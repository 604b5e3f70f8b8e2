"""Scene decomposition into K rigidly moving components (paper section 3.1-3.2).

* :func:`depth_ordered_softmax` is eq. (3): mask logits weighted by their depth order
  ``d_i = i`` before a softmax over the K components.
* :class:`ComponentMotion` holds K masks and K rigid transforms and applies eq. (6):
  ``x' = sum_i M_i(p) (R_i x + t_i)`` -- the whole transformed point is weighted, not only
  the rotation.
* Learning aids (docs/decomposition-ladder.md): :func:`hypothesis_motions` (components start as
  distinct scalings of the background's motion) and :func:`background_only_masks` (the K=1
  warm-up).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: The component that the learning aids treat as the background (ego-motion): the first, which
#: eq. (3) places farthest (order ``d_1 = 1``).
BACKGROUND_COMPONENT = 0


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


def hypothesis_motions(axis_angle: Tensor, translation: Tensor, factors: list[float], spread: float,
                       pose_scale: float, directions: Tensor | None = None,
                       scene_speed: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Components as motion hypotheses relative to the background (a learning aid).

    For ``(B, K, 3)`` pose-decoder outputs (already multiplied by ``pose_scale``) and K-1
    ``factors`` ``f_k``::

        r_k = r_0 + dr_k
        t_k = f_k t_0 + spread |t_0| tanh(dt_k / pose_scale)     (k >= 1; component 0 unchanged)

    With own-motion ``directions`` ``h_k`` ``(K-1, 3)`` (camera frame) and a ``scene_speed`` ``sigma``
    ``(B,)`` (a speed per frame in the depth's units, e.g. a fraction of the median depth)::

        t_k = f_k t_0 + sigma h_k + spread max(|t_0|, sigma) tanh(dt_k / pose_scale)

    A point of an object moving by ``v`` (its own motion, in the camera frame) moves relative to the
    camera by ``t_0 + v``: the factors cover objects travelling along the camera's heading, the
    directions those that cross it, and with the camera standing still (``t_0 = 0``) the directions
    and the ``sigma``-bounded residual are what is left to tell the components apart.

    where ``(dr_k, dt_k)`` are the decoder's outputs for component k. At initialisation
    (``dr, dt = 0``, :func:`zero_residual_motions`) the K transforms are K distinct hypotheses that
    follow the ego-motion from the first step: a rigid object travelling along the camera's
    direction of motion at speed ``v_o`` moves relative to the camera like the ego-motion scaled by
    ``1 - v_o / v`` (1 parked, 0 followed at the camera's speed, 2 oncoming at the same speed, < 0
    overtaking). A photometric loss only sees a few pixels around the current warp, so a motion far
    from every hypothesis would never be found by gradient descent; with hypotheses, the
    per-component reprojection (:mod:`mds_core.method.losses.component_assignment`) compares
    distinct motions at every pixel, and the residual refines each one within ``spread`` times
    the ego translation (per axis). The result is still K rigid motions (eq. 6).

    Two guards keep the background the ego-motion: the background's motion enters the hypotheses
    detached (only the pixels the background explains train it; otherwise a hypothesis with a
    negative factor that is handed static pixels pulls the ego translation backwards), and the
    bounded residual keeps every hypothesis away from the ego-motion itself when no factor is
    within ``spread`` of 1, so no component can take the static world over.
    """
    if len(factors) != axis_angle.shape[1] - 1:
        raise ValueError(f"need {axis_angle.shape[1] - 1} hypothesis factors, got {len(factors)}")
    base_rotation = axis_angle[:, :1].detach()
    base_translation = translation[:, :1].detach()
    factor = torch.tensor(factors, device=translation.device, dtype=translation.dtype).view(1, -1, 1)
    unit = base_translation.norm(dim=2, keepdim=True)
    hypotheses = factor * base_translation
    if scene_speed is not None:
        sigma = scene_speed.detach().to(translation.dtype).view(-1, 1, 1)
        unit = torch.maximum(unit, sigma)
        if directions is not None:
            hypotheses = hypotheses + sigma * directions.to(translation.dtype).view(1, -1, 3)
    residual = spread * unit * torch.tanh(translation[:, 1:] / pose_scale)
    rotation = torch.cat([axis_angle[:, :1], base_rotation + axis_angle[:, 1:]], dim=1)
    moved = torch.cat([translation[:, :1], hypotheses + residual], dim=1)
    return rotation, moved


def scene_speed(depth: Tensor, rate: float) -> Tensor:
    """``(B,)`` ``rate`` times the median of each frame's ``(B, 1, H, W)`` depth: the scale of own motion
    for :func:`hypothesis_motions`, in the depth's units (which the ego translation shares)."""
    return rate * depth.detach().flatten(1).median(dim=1).values


def zero_residual_motions(pose_head: nn.Conv2d) -> None:
    """Zero the pose head's outputs for components 1..K-1 so that they start exactly at their hypotheses.

    ``pose_head`` is the last 1x1 convolution of the pose decoder, 6 outputs per component
    (component 0 first). Without this the residuals ``(dr_k, dt_k)`` of :func:`hypothesis_motions`
    start at random values as large as a slow ego-motion.
    """
    with torch.no_grad():
        pose_head.weight[6:].zero_()
        pose_head.bias[6:].zero_()


def background_only_masks(masks: Tensor) -> Tensor:
    """All mass on :data:`BACKGROUND_COMPONENT` (the K=1 warm-up), keeping ``masks`` in the graph.

    ``0 * masks`` keeps every mask parameter in the autograd graph (with zero gradient), so that
    distributed training does not find unused parameters during the warm-up.
    """
    one_hot = torch.zeros_like(masks)
    one_hot[:, BACKGROUND_COMPONENT] = 1.0
    return one_hot + 0.0 * masks


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

    def component_points(self, points: Tensor) -> Tensor:
        """``R_i x + t_i`` for each of the K transforms alone: ``(..., B, 3, H, W)`` -> ``(..., B, K, 3, H, W)``."""
        rotation = self.transforms[:, :, :3, :3]
        translation = self.transforms[:, :, :3, 3]
        moved = torch.einsum("bkij,...bjhw->...bkihw", rotation, points)
        return moved + translation[:, :, :, None, None]

    def transform_points(self, points: Tensor) -> Tensor:
        """Eq. (6): ``x' = sum_i M_i(p) (R_i x + t_i)`` for ``(..., B, 3, H, W)`` target points.

        Computed as ``(sum_i M_i R_i) x + sum_i M_i t_i``: the per-pixel blended motion is formed once
        and then applied to every set of points (e.g. each scale's), instead of moving them K times.
        """
        rotation = torch.einsum("bkhw,bkij->bijhw", self.masks, self.transforms[:, :, :3, :3])
        translation = torch.einsum("bkhw,bki->bihw", self.masks, self.transforms[:, :, :3, 3])
        return (rotation * points.unsqueeze(-4)).sum(dim=-3) + translation
