"""Dynamo-Depth's motion model: ego-motion plus independent 3D scene flow gated by a motion mask.

Instead of K rigid components (:mod:`mds_core.method.decomposition`), every pixel may move on its
own. For a target point ``P = D K^-1 p`` (eq. 4) and the ego-motion ``T`` (target camera ->
source camera):

* the *rigid flow* ``E = T P - P`` is how the point would appear to move if the world were static;
* the *complete flow* ``C`` is how it appears to move, predicted per pixel;
* the *independent flow* ``F = M (C - E)`` is the part of ``C`` the ego-motion does not explain,
  gated by the motion mask ``M`` in [0, 1] (1: the pixel moves on its own);
* the point lands in the source camera at ``T (P + F)``, which is then projected (eq. 5) and the
  source sampled there (eq. 7): one geometry, two motion models
  (:func:`mds_core.method.warping.warp_source` takes either).

With ``M = 0`` this is exactly the rigid warp; with ``M = 1`` and a rotation-free ego-motion the
point lands at ``P + C``.

Constant velocity: the network predicts the complete flow toward the next frame; toward a source
``o`` frames away it is ``o`` times that (:func:`constant_velocity_flow`), so the flow toward the
previous frame is its negative.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from mds_core.method.geometry import transform_points


def constant_velocity_flow(flow_to_next: Tensor, offset: int) -> Tensor:
    """The complete flow toward the frame ``offset`` steps away (``-1``: previous), from the flow
    toward the next frame: ``offset * flow_to_next``."""
    if offset == 0:
        raise ValueError("a source frame is never the target itself (offset 0)")
    return flow_to_next * float(offset)


@dataclass
class SceneFlowMotion:
    """The scene-flow motion of one source frame, a :class:`mds_core.method.warping.MotionModel`.

    Attributes:
        ego: ``(B, 4, 4)`` target camera -> source camera (the ego-motion ``T``).
        complete_flow: ``(B, 3, H, W)`` complete flow ``C`` toward this source, in the target camera frame.
        mask: ``(B, 1, H, W)`` motion mask ``M`` (probability of moving independently).
    """

    ego: Tensor
    complete_flow: Tensor
    mask: Tensor

    def rigid_flow(self, points: Tensor) -> Tensor:
        """``E = T P - P`` for ``(..., B, 3, H, W)`` target points."""
        return transform_points(self.ego, points) - points

    def independent_flow(self, points: Tensor) -> Tensor:
        """``F = M (C - E)``: the motion of each point that the ego-motion does not explain."""
        return self.mask * (self.complete_flow - self.rigid_flow(points))

    def transform_points(self, points: Tensor) -> Tensor:
        """``T (P + F)``: the target points, moved on their own, in the source camera frame."""
        return transform_points(self.ego, points + self.independent_flow(points))
