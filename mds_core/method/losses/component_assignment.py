"""Per-component reprojection: each pixel is assigned to the rigid motion that explains it.

A learning aid, not in the paper (docs/decomposition-ladder.md). In eq. (6) a component's
transform only receives gradient through the pixels its mask covers, and a mask only grows
where its transform already explains the image, so from random weights the components end up
as region-by-region corrections of the ego-motion instead of objects. Here each of the K
transforms also warps the source on its own, and each pixel is *assigned* to one of them, hard,
as in the E-step of EM:

* ``pe_k(p)``, the photometric error of the source warped by ``T_k`` alone (eq. 8 with
  ``M_k = 1``), ``(B, K, H, W)``: the source sampled at :func:`component_pixels` (the objective
  samples and compares these together with its other warps);
* :func:`assignment_targets`: ``k*(p)``, the component with the lowest error over the sources,
  ``min_s pe_{s,k}(p)`` (so an occluded source does not decide), averaged over a small window (a
  rigid object moves its neighbours alike; one pixel's error is noisy), where it beats the
  background's by ``margin``; the background everywhere else. Where every hypothesis explains
  the image about as well (sky, untextured road, far away) the target stays the background, so
  ties do not scatter static pixels over the components. Every pixel has a target, including
  those that auto-masking drops: a car followed at the camera's speed is explained by a
  hypothesis that moves with the camera;
* the *assigned reprojection* ``mean_p min_s pe_{s,k*(p)}(p)`` (with auto-masking; the M-step)
  trains each transform on the pixels assigned to it, and only those;
* the *mask assignment* :func:`mask_assignment`, ``mean_p -log M_{k*(p)}(p)``, teaches the masks
  the assignment.

Used with :func:`mds_core.method.decomposition.hypothesis_motions`, which starts the components as
distinct motions, so that the assignment compares real alternatives from the first step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mds_core.method.decomposition import BACKGROUND_COMPONENT, ComponentMotion
from mds_core.method.geometry import project
from mds_core.method.window import window_mean

ASSIGNMENT_EPS = 1e-7


def component_pixels(points: Tensor, intrinsics: Tensor, motion: ComponentMotion) -> Tensor:
    """``(K, B, H, W, 2)``: where each of the K transforms of ``motion`` alone moves the target
    ``points`` ``(B, 3, H, W)`` in the source image (eq. 6 with ``M_k = 1``, then eq. 5)."""
    return project(motion.component_points(points).movedim(-4, 0), intrinsics)


def background_pixels(points: Tensor, intrinsics: Tensor, motion: ComponentMotion) -> Tensor:
    """``(B, H, W, 2)``: where the background's transform alone moves the target ``points`` ``(B, 3, H, W)``."""
    transform = motion.transforms[:, BACKGROUND_COMPONENT]
    moved = torch.einsum("bij,bjhw->bihw", transform[:, :3, :3], points) + transform[:, :3, 3, None, None]
    return project(moved, intrinsics)


def background_reprojection(errors: Tensor, moving: Tensor | None = None) -> Tensor:
    """The ego-motion's own term: ``mean_p min_s pe_{s,0}(p)`` over the pixels not known to move.

    ``errors`` ``(S, B, H, W)``: each source warped by the background's transform alone (with the depth
    detached: this term trains the motion, not the depth). No auto-masking: with the camera standing
    still every static pixel looks the same un-warped, so auto-masking drops them all and nothing would
    teach the ego-motion that the camera stopped; a hypothesis that follows the camera (``f_k = 0``)
    would then explain the whole static scene better than the background. ``moving`` ``(B, H, W)``: the
    motion evidence's pixels, left out.
    """
    per_pixel = errors.amin(dim=0)
    if moving is None:
        return per_pixel.mean()
    keep = (~moving).to(per_pixel.dtype)
    return (per_pixel * keep).sum() / keep.sum().clamp_min(1.0)


def standing_camera(transforms: Tensor, still: Tensor, scale: float) -> Tensor:
    """The ego-motion of a camera that the optical flow saw standing still: the identity.

    ``transforms`` ``(S, B, 4, 4)``: the background's transform to each source; ``still`` ``(B,)``: the
    frames whose static world did not move in the image against any source
    (:class:`~mds_core.method.motion_evidence.MotionEvidence`). The mean over those frames and sources of
    ``(|t| + |R - I|_F) / scale`` (``scale``: the pose decoder's output scaling, so that the term reads in
    the decoder's units); 0 without such frames. The photometric terms barely teach the stop: auto-masking
    drops a standing frame's static pixels (they match un-warped), and a component that stands still
    explains them as well as the background would.
    """
    if not bool(still.any()):
        return transforms.new_zeros(())
    chosen = transforms[:, still]
    eye = torch.eye(3, device=chosen.device, dtype=chosen.dtype)
    error = chosen[..., :3, 3].norm(dim=-1) + (chosen[..., :3, :3] - eye).flatten(-2).norm(dim=-1)
    return error.mean() / scale


def assignment_targets(errors: Tensor, margin: float, window: int = 1,
                       background: int = BACKGROUND_COMPONENT, moving: Tensor | None = None,
                       static: Tensor | None = None) -> Tensor:
    """``(B, H, W)`` target component per pixel from ``(B, K, H, W)`` errors (lower is better).

    The errors are first averaged over a ``window`` x ``window`` neighbourhood (a rigid object
    moves its neighbouring pixels alike, while a single pixel's error is noisy: aliasing, repeated
    texture); then ``argmin_k`` where it beats the background's averaged error by more than
    ``margin``, else ``background``. ``moving`` ``(B, H, W)`` booleans: pixels known to move
    (:mod:`mds_core.method.motion_evidence`); there the target is the best non-background
    component whatever the background's error; ``static`` ``(B, H, W)``: pixels known not to move
    (with the camera standing still), the background whatever the components' errors.
    """
    if window > 1:
        errors = window_mean(errors, window)
    best_error, best = errors.min(dim=1)
    clear = errors[:, background] - best_error > margin
    targets = torch.where(clear, best, torch.full_like(best, background))
    if moving is not None:
        others = errors.clone()
        others[:, background] = torch.inf
        targets = torch.where(moving & (targets == background), others.argmin(dim=1), targets)
    if static is not None:
        targets = torch.where(static, torch.full_like(targets, background), targets)
    return targets


def mask_assignment(soft_masks: Tensor, targets: Tensor, moving: Tensor | None = None,
                    background: int = BACKGROUND_COMPONENT) -> Tensor:
    """Mean over pixels of ``-log M_{target}``; ``targets`` is ``(B, H, W)`` long.

    ``moving`` ``(B, H, W)`` booleans: pixels the motion evidence says move. It says that they are not
    the background, not which component they are: there the term is ``-log (1 - M_background)``.
    """
    chosen = soft_masks.gather(1, targets[:, None])[:, 0]
    if moving is not None:
        chosen = torch.where(moving, 1.0 - soft_masks[:, background], chosen)
    return -chosen.clamp_min(ASSIGNMENT_EPS).log().mean()
