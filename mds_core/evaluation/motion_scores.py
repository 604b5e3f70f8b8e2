"""Moving-pixel scores of a decomposition, and the split of moving pixels by what the loss can see.

Two scores of how likely a pixel is to move independently of the camera:

* **mask score** (today's, :func:`mask_moving_score`): ``1 - M_b(p)`` with ``b`` the *dominant*
  component, the one with the largest total mask mass in the frame. It depends on which component
  is called the background: a decomposition that splits the static scene into facade and road
  components scores the smaller static region as moving.
* **motion-distance score** (:func:`motion_distance`): how far the mixture of eq. (6) moves the
  pixel's 3D point away from where the dominant component alone would move it, relative to depth:
  ``|sum_i M_i(p) (R_i x + t_i) - (R_b x + t_b)| / D(p)``. A component that moves like the dominant
  one costs nothing, whatever its mask, so this score does not depend on how the static scene is
  split. It is independent of the scale of depth and translation (both scale together).
  :func:`distance_to_probability` maps it monotonically into [0, 1) for the binned
  precision-recall evaluator: ``s / (s + scale)``, 0.5 at ``scale`` (1% of depth by default).
  Caveat: translation differences divided by depth favour near pixels, and vehicles are nearer
  than facades and sky, so even an untrained decomposition scores well above the prevalence.
* **flat motion-distance score**: the same distance with every pixel's point placed at the
  frame's median depth (:func:`flat_points`): ``|sum_i M_i (T_i - T_b) X_med(p)| / D_med``. It asks
  only whether the motion assigned to a pixel differs from the dominant one, not how near the
  pixel is, so it carries no depth prior.

Moving pixels that the image does not show as moving (a car followed at the camera's speed looks
static) are hidden from the loss by auto-masking. :func:`split_moving_labels` splits the moving
label by the identity difference ``mean_c |I_t - I_s|``: below ``threshold`` the pixel "moves with
the camera" (the un-warped source already explains it), otherwise it "moves relative to the
camera". Each split keeps all static pixels as negatives and ignores the other kind of mover.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mds_core.evaluation.metrics import IGNORE_LABEL
from mds_core.evaluation.motion_segmentation import POSITIVE_LABEL
from mds_core.method.decomposition import ComponentMotion
from mds_core.method.geometry import transform_points
from mds_core.method.scene_flow import SceneFlowMotion

#: Relative 3D distance at which :func:`distance_to_probability` gives 0.5.
DISTANCE_SCALE = 0.01
#: Mean absolute RGB difference in [0, 1] below which the un-warped source explains a pixel.
IDENTITY_THRESHOLD = 0.03


def dominant_components(masks: Tensor) -> Tensor:
    """``(B,)`` index of the component with the largest total mass of ``(B, K, H, W)`` masks."""
    return masks.flatten(2).sum(dim=2).argmax(dim=1)


def mask_moving_score(masks: Tensor) -> Tensor:
    """``(B, H, W)``: ``1 - M_b`` with ``b`` the dominant component of each frame."""
    dominant = dominant_components(masks)
    return 1.0 - masks[torch.arange(masks.shape[0], device=masks.device), dominant]


def motion_distance(motion: ComponentMotion | SceneFlowMotion, points: Tensor, depth: Tensor) -> Tensor:
    """``(B, H, W)``: ``|x'_mixture - x'_dominant| / depth`` (see the module docstring).

    Args:
        motion: the K masks and target->source transforms of one source frame (eq. 6), or the
            scene-flow motion of one source frame, whose dominant motion is the ego-motion (the
            distance is then that of the independent flow, ``|R F| / depth``).
        points: ``(B, 3, H, W)`` back-projected target points (eq. 4).
        depth: ``(B, 1, H, W)`` the depth the points were back-projected with.
    """
    moved = motion.transform_points(points)
    if isinstance(motion, SceneFlowMotion):
        transform = motion.ego
    else:
        dominant = dominant_components(motion.masks)
        transform = motion.transforms[torch.arange(points.shape[0], device=points.device), dominant]
    return (moved - transform_points(transform, points)).norm(dim=1) / depth[:, 0].clamp_min(1e-7)


def flat_points(depth: Tensor, inv_intrinsics: Tensor) -> tuple[Tensor, Tensor]:
    """Back-projected points and depth with every pixel at its frame's median ``depth``."""
    from mds_core.method.geometry import backproject

    median = depth.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
    flat = median.expand_as(depth).contiguous()
    return backproject(flat, inv_intrinsics), flat


def distance_to_probability(distance: Tensor | np.ndarray, scale: float = DISTANCE_SCALE):
    """Monotone map of a non-negative distance into [0, 1): ``d / (d + scale)``."""
    return distance / (distance + scale)


def identity_difference(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """``(H, W)`` mean absolute RGB difference in [0, 1] of two ``(H, W, 3)`` uint8 frames."""
    diff = np.abs(current.astype(np.float32) - previous.astype(np.float32)) / 255.0
    return diff.mean(axis=2)


@dataclass(frozen=True)
class MovingSplit:
    """Motion labels in which one kind of moving pixel is ignored (255)."""

    relative: np.ndarray  # movers the identity does not explain are positives; with-camera movers ignored
    with_camera: np.ndarray  # movers the identity explains are positives; relative movers ignored

    @property
    def moves_with_camera(self) -> np.ndarray:
        """``(H, W)`` bool: the moving pixels that the un-warped previous frame explains."""
        return self.with_camera == POSITIVE_LABEL


def split_moving_labels(labels: np.ndarray, difference: np.ndarray,
                        threshold: float = IDENTITY_THRESHOLD) -> MovingSplit:
    """Split the moving label (1) by ``difference < threshold`` (moves with the camera) or not."""
    if labels.shape != difference.shape:
        raise ValueError(f"labels {labels.shape} and difference {difference.shape} must have the same shape")
    moving = labels == POSITIVE_LABEL
    with_camera = moving & (difference < threshold)
    relative = moving & ~with_camera
    relative_labels = labels.copy()
    relative_labels[with_camera] = IGNORE_LABEL
    with_camera_labels = labels.copy()
    with_camera_labels[relative] = IGNORE_LABEL
    return MovingSplit(relative=relative_labels, with_camera=with_camera_labels)
