"""Motion evidence: optical flow that no static point can produce under the ego-motion.

A learning aid and, at inference, a second opinion beside the masks; not in the paper
(docs/decomposition-ladder.md, "At a crossing"). The motion
hypotheses (:func:`mds_core.method.decomposition.hypothesis_motions`) start the components at
motions related to the camera's; a mover that fits none of them (traffic crossing the camera's
heading, a pedestrian, anything moving while the camera stands still) is never assigned away from
the background by the photometric comparison alone. The data say where such movers are:

* :func:`dense_flow` -- OpenCV's DIS optical flow from the target to a source frame, and where it
  is trustworthy (forward-backward consistent, ending inside the source image);
* :func:`epipolar_distance` -- how far the flow's end point lies from where a static point could
  go. Under the ego-motion ``T = [R | t]`` (target -> source) a static point of the target pixel
  ``p`` at inverse depth ``s = 1 / z`` lands at ``p'(s) = (h + s k)_xy / (h + s k)_z`` with
  ``h = K R K^-1 p`` and ``k = K t``: on the segment from ``p'(0)`` (infinitely far: the rotation
  alone) towards the epipole, ending at the nearest static depth. The distance to that segment needs
  no depth: an object moving along the camera's heading stays on it (the hypotheses cover those),
  one crossing it leaves it, and with the camera standing still (``t = 0``) the segment is the
  point ``p'(0)`` and the distance is the flow itself, less the rotation;
* :func:`camera_still` -- frames whose static world does not move in the image: the camera stood
  still, whatever the network's ego-motion says, and every flow is a mover's;
* :func:`motion_evidence` -- :class:`MotionEvidence`: the pixels whose distance, averaged over a
  small window, exceeds a threshold where the flow is trustworthy (they move); on frames with the
  camera standing still, also those whose trusted flow stays well below it (they are static: with
  the camera at rest nothing else can explain a pixel that does not move);
* :func:`stream_evidence` -- for inference, a score in [0, 1) from the two frames and the model's
  depth: the distance of each flow vector from where a static point can go under the flow's own
  ego-motion (an essential matrix fitted by RANSAC, :func:`flow_ego_motion`), so that it does not
  depend on a network's ego-motion: the half of its epipolar line static points reach
  (:func:`epipolar_ray_distance`), and near the depth's point on it as far as the depth explains
  the static world's flow (:func:`static_depth_distance`, :class:`DepthTrust`): that finds the
  traffic along the camera's heading, which stays on its epipolar lines. On a stream
  (:class:`EvidenceStream`) it also looks :data:`LONG_BASELINE_FRAMES` frames back, through the flow chained
  frame to frame (:class:`FlowChain`): a mover too slow to leave where a static point goes in one frame's
  time (a walker far away, a car ahead at the camera's speed) leaves it in three. The predictor weighs it
  with the masks' moving probability (``Predictor(motion_evidence=True)``, the default): a mover the masks of a small
  model miss, or a static region they take for one, is weighed against what the frames show.

The objective (:mod:`mds_core.method.losses.component_assignment`) assigns the moving pixels to the
best non-background component even where no component beats the background yet, so that the masks
learn to separate them and the component's motion trains on them; the static ones to the
background, whatever motion the components have learned; and it teaches the ego-motion that the
camera stood still.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mds_core.method.geometry import pixel_grid
from mds_core.method.window import window_mean
from mds_core.motion_labels import MOTION_MOVING, MOTION_PARKED, MOTION_STATIC

#: Forward-backward consistency (as in UnFlow): a flow vector is trusted where
#: ``|f(p) + b(p + f(p))|^2 < FB_RELATIVE (|f|^2 + |b|^2) + FB_ABSOLUTE`` (pixels^2).
FB_RELATIVE = 0.01
FB_ABSOLUTE = 0.5
#: OpenCV's DIS flow at the model's small sizes: the medium preset, but refined down to full resolution
#: (the preset stops at half) with smaller patches on a denser grid. Against the generator's true flow
#: on held-out city drives at 192x64 this halves the error on traffic crossing the view (median 4 px
#: of 6.6 with the preset alone; docs/decomposition-ladder.md, "The flow's resolution").
DIS_FINEST_SCALE = 0
DIS_PATCH_SIZE = 6
DIS_PATCH_STRIDE = 2
#: The nearest static point is taken at this fraction of the frame's NEAR_QUANTILE depth (learned
#: depth is rough; a nearer bound only lengthens the segment a static point may move along).
NEAR_FRACTION = 0.5
NEAR_QUANTILE = 0.02
#: The camera stood still when the median trusted flow is below this many pixels (:func:`camera_still`).
STILL_PIXELS = 0.25
#: The flow's own ego-motion (:func:`flow_ego_motion`): about this many trusted flow vectors, evenly
#: spread, enter RANSAC (at least RANSAC_MIN_POINTS), whose inlier threshold is RANSAC_PIXELS.
RANSAC_POINTS = 2000
RANSAC_MIN_POINTS = 50
RANSAC_PIXELS = 0.5
#: Inliers of the fit that choose among the essential matrix's four motions (points in front of both cameras).
POSE_POINTS = 50
#: The evidence at inference with the model's depth (:func:`static_depth_distance`): a static point's inverse depth
#: may be anything within the range of the depth's over a window of this radius (DIS smooths the flow across depth
#: edges), widened by this factor either way (a learned depth is rough; the translation's scale is fitted).
DEPTH_WINDOW_RADIUS = 2
DEPTH_TOLERANCE = 3.0
#: How far a model's depth is trusted (:class:`DepthTrust`): what it adds to the ray distance, at
#: DEPTH_TRUST_QUANTILE over a frame's trusted flow (its static world: movers are a minority), is about 0 where the
#: depth explains the static world's flow; the median of that over the last DEPTH_TRUST_FRAMES frames the predictor
#: saw (a frame full of movers does not count alone) weighs the depth's share by
#: 1 - it / (DEPTH_TRUST_FRACTION x the evidence's threshold): a poorly trained depth, or a depth on footage unlike
#: its training, leaves the ray distance.
DEPTH_TRUST_QUANTILE = 0.75
DEPTH_TRUST_FRACTION = 0.25
DEPTH_TRUST_FRAMES = 100
#: The translation scale: least squares over the pixels that agree best (SCALE_TRIM of them left out each time).
SCALE_TRIM = 0.3
SCALE_ITERATIONS = 3
#: The inference evidence where the flow inside the image is not forward-backward consistent (an occlusion, or a
#: motion DIS cannot follow: a fast car near the camera) and no trusted pixel of its colour is near: undecided,
#: neither moving nor static (the prior of :func:`colour_guided_fill`).
UNDECIDED = 0.5
#: Where it is undecided, the evidence of the trusted pixels of the same colour around it (:func:`colour_guided_fill`):
#: within FILL_RADIUS pixels, weighted by a Gaussian of the distance (FILL_SIGMA_SPACE pixels) and of the colour
#: difference (FILL_SIGMA_COLOUR, RGB in [0, 1]), with UNDECIDED as a prior of the weight of FILL_PRIOR_WEIGHT
#: trusted pixels of the same colour next to it.
FILL_RADIUS = 5
FILL_SIGMA_SPACE = 3.0
FILL_SIGMA_COLOUR = 0.04
FILL_PRIOR_WEIGHT = 1.0
#: Pixels: a flow that ends this close outside the outer pixels' centres is DIS's numerical zero, inside.
INSIDE_TOLERANCE = 1e-3
#: A stream's evidence is the mean of the one frame pair's and of the flow chained this many frames back
#: (:class:`FlowChain`), whose threshold is LONG_BASELINE_THRESHOLD times the pair's: a static point's flow grows
#: with the frames, the chained flow's errors too.
LONG_BASELINE_FRAMES = 3
LONG_BASELINE_THRESHOLD = 2.0
#: On a standing frame, a pixel is static where its window-mean flow stays below this fraction of the
#: moving threshold (a margin around the movers: a window that touches one has a raised mean).
STATIC_FRACTION = 0.5


@dataclass
class MotionEvidence:
    """What the optical flow alone says about a target frame, against one source or several.

    ``moving`` ``(B, H, W)``: pixels that move in a way no static point can; ``static`` ``(B, H, W)``:
    pixels known not to move (only on frames with the camera standing still; elsewhere none);
    ``still`` ``(B,)``: the camera stood still.
    """

    moving: Tensor
    static: Tensor
    still: Tensor

    @staticmethod
    def across_sources(per_source: list[MotionEvidence]) -> MotionEvidence:
        """The evidence of a target against all its sources: moving against any of them, static and
        still against every one (a frame where the camera starts moving again is not a standing one)."""
        return MotionEvidence(
            moving=torch.stack([e.moving for e in per_source]).any(dim=0),
            static=torch.stack([e.static for e in per_source]).all(dim=0),
            still=torch.stack([e.still for e in per_source]).all(dim=0),
        )

    @staticmethod
    def labelled(labels: list[Tensor], size: tuple[int, int], still: Tensor) -> MotionEvidence:
        """The oracle rung "movers" (``model.moving_pixels_source``): what the generated scene's labels say
        instead of the flow. ``labels``: per sample ``(1, Hg, Wg)`` (1 moving; 0 static, 2 parked: static;
        255 unlabelled: neither), resized (nearest) to ``size``; ``still`` ``(B,)`` as the flow saw it."""
        resized = torch.stack([F.interpolate(m[None].float(), size=size, mode="nearest")[0, 0] for m in labels])
        resized = resized.to(still.device)
        return MotionEvidence(moving=resized == MOTION_MOVING, static=(resized == MOTION_STATIC) | (resized == MOTION_PARKED),
                              still=still)


def _grey_uint8(images: Tensor) -> list[np.ndarray]:
    """``(N, 3, H, W)`` images in [0, 1] -> N contiguous grey uint8 arrays."""
    grey = (images.detach().float().mean(dim=1) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return [np.ascontiguousarray(g) for g in grey.cpu().numpy()]


def ends_inside(u, v, height: int, width: int):
    """Where flow end points ``(u, v)`` (arrays or tensors of pixel coordinates) lie inside a ``height x width`` image
    (to within :data:`INSIDE_TOLERANCE`: a border pixel's flow of -1e-7 px stays inside)."""
    low, high = -INSIDE_TOLERANCE, INSIDE_TOLERANCE
    return (u >= low) & (u <= width - 1 + high) & (v >= low) & (v <= height - 1 + high)


def dense_flow(target: Tensor, source: Tensor) -> tuple[Tensor, Tensor]:
    """DIS optical flow from each ``(B, 3, H, W)`` target image to its source image.

    Returns ``flow`` ``(B, 2, H, W)`` in pixels (``p + flow(p)`` is where ``p`` went in the source) and
    ``valid`` ``(B, H, W)`` booleans: forward-backward consistent and ending inside the source image.
    Computed on the CPU (OpenCV); the results are on the inputs' device.
    """
    height, width = target.shape[-2:]
    grid = pixel_grid(height, width)[:2].numpy().transpose(1, 2, 0)  # (H, W, 2) u, v
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(DIS_FINEST_SCALE)
    dis.setPatchSize(DIS_PATCH_SIZE)
    dis.setPatchStride(DIS_PATCH_STRIDE)
    flows, valids = [], []
    for first, second in zip(_grey_uint8(target), _grey_uint8(source)):
        forward = dis.calc(first, second, None)
        backward = dis.calc(second, first, None)
        end = grid + forward
        back = cv2.remap(backward, end[..., 0].astype(np.float32), end[..., 1].astype(np.float32),
                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mismatch = np.square(forward + back).sum(axis=-1)
        bound = FB_RELATIVE * (np.square(forward).sum(axis=-1) + np.square(back).sum(axis=-1)) + FB_ABSOLUTE
        inside = ends_inside(end[..., 0], end[..., 1], height, width)
        flows.append(forward.transpose(2, 0, 1))
        valids.append((mismatch < bound) & inside)
    flow = torch.from_numpy(np.stack(flows)).to(target.device)
    return flow, torch.from_numpy(np.stack(valids)).to(target.device)


def epipolar_distance(flow: Tensor, transform: Tensor, intrinsics: Tensor, near_depth: Tensor) -> Tensor:
    """``(B, H, W)`` distance in pixels of each flow end point from the segment a static point can reach.

    Args:
        flow: ``(B, 2, H, W)`` target -> source flow in pixels.
        transform: ``(B, 4, 4)`` the ego-motion, target camera -> source camera.
        intrinsics: ``(B, 3, 3)``.
        near_depth: ``(B,)`` the nearest depth of a static point, in the translation's units.
    """
    batch, _, height, width = flow.shape
    dtype = flow.dtype
    pixels = pixel_grid(height, width, device=flow.device, dtype=dtype)  # (3, H, W)
    intrinsics = intrinsics.to(dtype)
    rotation, translation = transform[:, :3, :3].to(dtype), transform[:, :3, 3].to(dtype)
    homography = intrinsics @ rotation @ torch.linalg.inv(intrinsics)
    h = torch.einsum("bij,jhw->bihw", homography, pixels)  # p'(0) homogeneous
    k = torch.einsum("bij,bj->bi", intrinsics, translation)[:, :, None, None]
    s = (1.0 / near_depth.to(dtype).clamp_min(1e-6)).view(batch, 1, 1, 1)
    near = h + s * k
    eps = 1e-6
    far_end = h[:, :2] / h[:, 2:].clamp_min(eps)
    # a segment that would pass behind the camera (fast backward motion) is cut at a tiny positive depth:
    # it then reaches far along its line, which only makes the evidence more cautious there
    near_end = near[:, :2] / near[:, 2:].clamp_min(eps * h[:, 2:].abs().clamp_min(1.0))
    return distance_to_segments(pixels[:2] + flow, far_end, near_end)


def distance_to_segments(points: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """``(B, H, W)`` distance of each of the ``(B, 2, H, W)`` points from its segment ``first`` -> ``second``."""
    along = second - first
    length2 = (along * along).sum(dim=1, keepdim=True)
    u = (((points - first) * along).sum(dim=1, keepdim=True) / length2.clamp_min(1e-12)).clamp(0.0, 1.0)
    closest = first + u * along
    offset = points - closest
    return torch.hypot(offset[:, 0], offset[:, 1])  # (torch's vector norm over dim 1 is far slower on the CPU)


def camera_still(flow: Tensor, valid: Tensor) -> Tensor:
    """``(B,)`` True where the camera stood still: the median trusted flow is below :data:`STILL_PIXELS`.

    The static world fills most of a camera's view, so when it does not move in the image, the camera
    did not move (or turn); the movers are then all the flow there is. A network's ego-motion is least
    sure exactly there (auto-masking hides standing frames from it), so the evidence does not use it.
    """
    magnitude = torch.hypot(flow[:, 0], flow[:, 1])
    still = []
    for values, trusted in zip(magnitude, valid):
        kept = values[trusted]
        still.append(bool(kept.numel() > 0 and float(kept.median()) < STILL_PIXELS))
    return torch.tensor(still, device=flow.device)


def near_static_depth(depth: Tensor) -> Tensor:
    """``(B,)`` the nearest depth taken for a static point: :data:`NEAR_FRACTION` of each ``(B, 1, H, W)``
    depth map's :data:`NEAR_QUANTILE` quantile."""
    return NEAR_FRACTION * torch.quantile(depth.detach().flatten(1).float(), NEAR_QUANTILE, dim=1)


def window_distance(distance: Tensor, valid: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """``(mean, reliable)``: the window mean of ``distance`` (``(B, H, W)`` pixels) over the trusted flow
    ``valid``, and where that is reliable (trusted pixel, more than half of its window trusted)."""
    distance = torch.where(valid, distance, torch.zeros_like(distance))
    trusted = window_mean(valid.to(distance.dtype), window)
    return window_mean(distance, window) / trusted.clamp_min(1e-6), valid & (trusted > 0.5)


def evidence_distance(target: Tensor, source: Tensor, transform: Tensor, intrinsics: Tensor, depth: Tensor,
                      window: int, flow: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(distance, reliable, still)``: :func:`window_distance` of :func:`epipolar_distance`, and which frames
    show the camera standing (``(B,)``, :func:`camera_still`; their transform is taken as the identity).

    Args: as :func:`motion_evidence`.
    """
    flow, valid = dense_flow(target, source) if flow is None else flow
    still = camera_still(flow, valid)
    transform = torch.where(still[:, None, None], torch.eye(4, device=transform.device), transform.detach().float())
    distance = epipolar_distance(flow, transform, intrinsics.float(), near_static_depth(depth))
    return (*window_distance(distance, valid, window), still)


def motion_evidence(target: Tensor, source: Tensor, transform: Tensor, intrinsics: Tensor, depth: Tensor,
                    threshold: float, window: int, flow: tuple[Tensor, Tensor] | None = None) -> MotionEvidence:
    """Where the target pixels move in a way no static point can, and, with the camera standing still,
    where they do not move at all.

    Args:
        target, source: ``(B, 3, H, W)`` images in [0, 1].
        transform: ``(B, 4, 4)`` ego-motion target -> source (detached by the caller or here).
        intrinsics: ``(B, 3, 3)``.
        depth: ``(B, 1, H, W)`` the warp's depth, for the nearest static depth only.
        threshold: pixels; the window mean of :func:`epipolar_distance` must exceed it.
        window: odd window size in pixels for the mean.
        flow: :func:`dense_flow` of ``target`` and ``source`` when it was computed already (the training
            data set's), else it is computed here.
    """
    mean_distance, reliable, still = evidence_distance(target, source, transform, intrinsics, depth, window, flow)
    return MotionEvidence(
        moving=reliable & (mean_distance > threshold),
        static=reliable & (mean_distance < STATIC_FRACTION * threshold) & still[:, None, None],
        still=still,
    )


def flow_ego_motion(flow: Tensor, valid: Tensor, intrinsics: Tensor, still: Tensor) -> Tensor:
    """``(B, 4, 4)`` the camera's motion target -> source that the flow's static world shows: the essential
    matrix of the trusted flow vectors (RANSAC, so the movers are its outliers), rotation and a unit
    translation (the scale is unknown); the identity on standing frames and where the fit fails.

    Needs no network: a model whose ego-motion is still wrong (early in training, or on footage unlike
    its training drives) does not make the static world look moving.
    """
    transforms = torch.eye(4).repeat(flow.shape[0], 1, 1)
    cv2.setRNGSeed(0)  # RANSAC draws from OpenCV's global generator: the same frames, the same answer
    for b in range(flow.shape[0]):
        if bool(still[b]):
            continue
        rows, cols = torch.nonzero(valid[b], as_tuple=True)
        if rows.numel() < RANSAC_MIN_POINTS:
            continue
        step = max(1, rows.numel() // RANSAC_POINTS)
        rows, cols = rows[::step], cols[::step]
        start = torch.stack([cols, rows], dim=1).double()
        end = start + flow[b][:, rows, cols].T.double()
        matrix = intrinsics[b].double().cpu().numpy()
        points, targets = start.cpu().numpy(), end.cpu().numpy()
        essential, inliers = cv2.findEssentialMat(points, targets, matrix, cv2.RANSAC, 0.999, RANSAC_PIXELS)
        if essential is None or essential.shape != (3, 3):
            continue
        kept = np.flatnonzero(inliers.ravel())  # the cheirality test needs a few inliers, not all (it triangulates)
        kept = kept[:: max(1, kept.size // POSE_POINTS)]
        if kept.size < 5:
            continue
        _, rotation, translation, _ = cv2.recoverPose(essential, points[kept], targets[kept], matrix)
        transforms[b, :3, :3] = torch.from_numpy(rotation)
        transforms[b, :3, 3] = torch.from_numpy(translation[:, 0])
    return transforms.to(flow.device)


def epipolar_line_distance(flow: Tensor, transform: Tensor, intrinsics: Tensor) -> Tensor:
    """``(B, H, W)`` distance in pixels of each flow end point from the epipolar line of its pixel: the line
    through where the rotation alone takes it and the epipole, on which every static point lies whatever its
    depth (scale-free: :func:`epipolar_distance` with the whole line for the segment). Without translation,
    the distance from where the rotation takes the pixel.

    The line of pixel ``p`` is ``(K R K^-1 p) x (K t) = F p`` with ``F = -[K t]_x K R K^-1`` (the fundamental
    matrix, target -> source).
    """
    batch, _, height, width = flow.shape
    dtype = flow.dtype
    pixels = pixel_grid(height, width, device=flow.device, dtype=dtype).reshape(3, -1)  # (3, N)
    intrinsics = intrinsics.to(dtype)
    rotation, translation = transform[:, :3, :3].to(dtype), transform[:, :3, 3].to(dtype)
    homography = intrinsics @ rotation @ torch.linalg.inv(intrinsics)
    ex, ey, ez = (intrinsics @ translation[:, :, None])[:, :, 0].unbind(dim=1)
    zero = torch.zeros_like(ex)
    skew = torch.stack([torch.stack([zero, -ez, ey], 1), torch.stack([ez, zero, -ex], 1),
                        torch.stack([-ey, ex, zero], 1)], 1)  # [K t]_x
    lines = (-skew @ homography) @ pixels  # (B, 3, N)
    end = pixels[None, :2] + flow.reshape(batch, 2, -1)
    normal = torch.hypot(lines[:, 0], lines[:, 1])
    to_line = (lines[:, 0] * end[:, 0] + lines[:, 1] * end[:, 1] + lines[:, 2]).abs() / normal.clamp_min(1e-12)
    rotated = homography @ pixels
    offset = end - rotated[:, :2] / rotated[:, 2:].clamp_min(1e-6)
    to_point = torch.hypot(offset[:, 0], offset[:, 1])
    moves = (translation.norm(dim=1)[:, None] > 1e-9) & (normal > 1e-9)
    return torch.where(moves, to_line, to_point).reshape(batch, height, width)


def epipolar_ray_distance(flow: Tensor, transform: Tensor, intrinsics: Tensor) -> Tensor:
    """``(B, H, W)`` :func:`epipolar_line_distance`, but only the half of the line a static point can reach: every
    static point lies between where the rotation alone takes its pixel (infinitely far) and the epipole (at the
    camera), so a flow that ends beyond the first (a car driving away faster than the camera follows, seen as if
    behind the camera) is that far from it. Needs no depth: the translation's direction is enough (the flow's own,
    :func:`flow_ego_motion`, whose sign puts the static points in front of both cameras)."""
    return _ray_distance(flow, transform, intrinsics, _flow_on_lines(flow, transform, intrinsics))


def _ray_distance(flow: Tensor, transform: Tensor, intrinsics: Tensor, lines: tuple[Tensor, ...]) -> Tensor:
    """:func:`epipolar_ray_distance` with :func:`_flow_on_lines` computed already."""
    line = epipolar_line_distance(flow, transform, intrinsics)
    h, _, a, b = lines
    behind = (a * b).sum(dim=1) < 0  # the end point's inverse depth on its line, times the translation, is negative
    _, _, height, width = flow.shape
    end = pixel_grid(height, width, device=flow.device, dtype=flow.dtype)[:2] + flow
    offset = end - h[:, :2] / h[:, 2:].clamp_min(1e-6)  # from where the rotation alone takes the pixel
    moves = (transform[:, :3, 3].norm(dim=1) > 1e-9).view(-1, 1, 1)
    return torch.where(behind & moves, torch.hypot(offset[:, 0], offset[:, 1]), line)


def _flow_on_lines(flow: Tensor, transform: Tensor, intrinsics: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(h, k, a, b)`` of each pixel ``p`` under a target -> source ``transform``: a static point at inverse depth
    ``s`` (times the translation's length) goes to ``(h + s k)_xy / (h + s k)_z`` with ``h = K R K^-1 p`` and
    ``k = K t`` (``(B, 3, H, W)``, ``(B, 3, 1, 1)``); the flow's end point ``e`` is that of ``s a = b`` in the
    least-squares sense, with ``a = e k_z - k_xy`` and ``b = h_xy - e h_z`` (``(B, 2, H, W)`` each)."""
    _, _, height, width = flow.shape
    pixels = pixel_grid(height, width, device=flow.device, dtype=flow.dtype)
    intrinsics = intrinsics.to(flow.dtype)
    rotation, translation = transform[:, :3, :3].to(flow.dtype), transform[:, :3, 3].to(flow.dtype)
    h = torch.einsum("bij,jhw->bihw", intrinsics @ rotation @ torch.linalg.inv(intrinsics), pixels)
    k = torch.einsum("bij,bj->bi", intrinsics, translation)[:, :, None, None]
    end = pixels[:2] + flow
    return h, k, end * k[:, 2:] - k[:, :2], h[:, :2] - end * h[:, 2:]


def translation_scale(flow: Tensor, valid: Tensor, transform: Tensor, intrinsics: Tensor,
                      inverse_depth: Tensor) -> Tensor:
    """``(B,)`` the length of ``transform``'s translation, in the depth's units, with which static points at
    ``inverse_depth`` (``(B, 1, H, W)``) move as the trusted flow shows (the direction is the transform's;
    :func:`flow_ego_motion`'s translation has unit length).

    Each pixel's position along its epipolar line, over its inverse depth, gives a scale; the frame's is a least
    squares over the pixels that agree best with it (movers are a minority), started at their median. NaN where
    none can be fitted: no translation (a standing camera) or too few trusted pixels away from the epipole.
    """
    return _translation_scale(_flow_on_lines(flow, transform, intrinsics), valid, transform, inverse_depth)


def _translation_scale(lines: tuple[Tensor, ...], valid: Tensor, transform: Tensor, inverse_depth: Tensor) -> Tensor:
    """:func:`translation_scale` with :func:`_flow_on_lines` computed already."""
    _, _, a, b = lines
    weight = (a * a).sum(dim=1)  # |a|^2: near the epipole the flow says little about depth
    inverse = inverse_depth[:, 0].to(a.dtype)
    scales = []
    for i in range(a.shape[0]):
        informative = valid[i] & (weight[i] > 1e-4 * float(weight[i].max().clamp_min(1e-12)))
        if float(transform[i, :3, 3].norm()) < 1e-9 or int(informative.sum()) < RANSAC_MIN_POINTS:
            scales.append(float("nan"))
            continue
        position = (a[i] * b[i]).sum(dim=0) / weight[i].clamp_min(1e-12)
        scale = (position[informative] / inverse[i][informative]).median()
        for _ in range(SCALE_ITERATIONS):
            residual = (a[i] * (scale * inverse[i]) - b[i]).square().sum(dim=0)
            kept = informative & (residual <= torch.quantile(residual[informative], 1.0 - SCALE_TRIM))
            scale = (inverse[i] * (a[i] * b[i]).sum(dim=0))[kept].sum() / (inverse[i].square() * weight[i])[kept].sum()
        scales.append(float(scale))
    return torch.tensor(scales, device=a.device)


@dataclass
class StaticDepthDistance:
    """:func:`static_depth_distance`: ``ray`` ``(B, H, W)`` the distance from the half of the epipolar line a static
    point can reach (:func:`epipolar_ray_distance`), ``excess`` ``(B, H, W)`` how much further the points the depth
    allows are (0 on frames without a fitted translation scale), ``static_excess`` ``(B,)`` its
    :data:`DEPTH_TRUST_QUANTILE` quantile over the trusted flow (NaN without a scale)."""

    ray: Tensor
    excess: Tensor
    static_excess: Tensor
    parallax: Tensor  # (B, H, W) how far the translation moves a static point at the pixel's depth (inf: no scale)

    def distance(self, trust: Tensor) -> Tensor:
        """``(B, H, W)`` the ray distance plus the depth's share, weighed by ``trust`` ``(B,)`` in [0, 1]."""
        return self.ray + trust.view(-1, 1, 1).to(self.excess.dtype) * self.excess

    def sight(self, trust: Tensor, threshold: float) -> Tensor:
        """``(B, H, W)`` in [0, 1]: how far the evidence can see a mover that stays on its epipolar line, the
        :attr:`parallax` against ``threshold`` pixels (1 on frames without a fitted translation: a standing camera
        shows every motion whole), as far as ``trust`` ``(B,)`` believes the depth (1 without trust: no say)."""
        seen = (self.parallax / threshold).clamp(0.0, 1.0)
        return 1.0 - trust.view(-1, 1, 1).to(seen.dtype) * (1.0 - seen)


class DepthTrust:
    """How far a model's depth explains the static world's optical flow, over the frames seen so far (the last
    :data:`DEPTH_TRUST_FRAMES`): 1 minus the median of their :attr:`StaticDepthDistance.static_excess` over
    :data:`DEPTH_TRUST_FRACTION` of the evidence's threshold, clamped to [0, 1]. A predictor keeps one: a depth
    network is as good on one frame of a stream as on the next, and a frame whose trusted flow is mostly a mover's
    would alone distrust a good depth."""

    def __init__(self, frames: int = DEPTH_TRUST_FRAMES):
        self._excess: deque[float] = deque(maxlen=frames)

    def __call__(self, static_excess: Tensor, threshold: float) -> Tensor:
        """``(B,)`` the trust for a batch of frames, after adding their ``static_excess`` to the history."""
        self._excess.extend(v for v in static_excess.tolist() if math.isfinite(v))
        typical = float(np.median(self._excess)) if self._excess else float("inf")
        trust = max(0.0, 1.0 - typical / (DEPTH_TRUST_FRACTION * threshold))
        return torch.full(static_excess.shape, trust, device=static_excess.device)


def static_depth_distance(flow: Tensor, valid: Tensor, transform: Tensor, intrinsics: Tensor,
                          depth: Tensor) -> StaticDepthDistance:
    """How far each flow end point is from where a static point at the model's depth can go, beyond its distance
    from the half of its epipolar line that any static point can reach.

    :func:`epipolar_ray_distance` sees no mover that stays on that half line: most traffic along the camera's
    heading (a car coming closer moves along it faster than a static point at its depth, one driving away
    slower). The depth says where on the line a static point must be: between the inverse depths of
    its :data:`DEPTH_WINDOW_RADIUS` window (the flow is smoothed across depth edges), times the translation's scale
    (:func:`translation_scale`), widened by :data:`DEPTH_TOLERANCE` either way. How far that is to be believed,
    :class:`DepthTrust` says from the static world's share. Frames without a fitted scale (a standing camera) have
    no excess.

    Args:
        flow, valid: :func:`dense_flow`'s.
        transform: ``(B, 4, 4)`` the flow's own ego-motion (:func:`flow_ego_motion`), any translation length.
        intrinsics: ``(B, 3, 3)``.
        depth: ``(B, 1, H, W)`` the model's depth (any scale), at the flow's size.
    """
    inverse = 1.0 / depth.to(flow.dtype).clamp_min(1e-6)
    lines = _flow_on_lines(flow, transform, intrinsics)
    scale = _translation_scale(lines, valid, transform, inverse)
    fitted = torch.isfinite(scale) & (scale > 0)
    scale = torch.where(fitted, scale, torch.zeros_like(scale)).view(-1, 1, 1, 1)
    radius = DEPTH_WINDOW_RADIUS
    lowest = -F.max_pool2d(-inverse, 2 * radius + 1, stride=1, padding=radius) / DEPTH_TOLERANCE
    highest = F.max_pool2d(inverse, 2 * radius + 1, stride=1, padding=radius) * DEPTH_TOLERANCE
    h, k, _, _ = lines

    def reached(inverse_depth: Tensor) -> Tensor:
        point = h + scale * inverse_depth * k
        return point[:, :2] / point[:, 2:].clamp_min(1e-6)

    _, _, height, width = flow.shape
    end = pixel_grid(height, width, device=flow.device, dtype=flow.dtype)[:2] + flow
    ray = _ray_distance(flow, transform, intrinsics, lines)
    excess = (distance_to_segments(end, reached(lowest), reached(highest)) - ray).clamp_min(0.0)
    excess = torch.where(fitted.view(-1, 1, 1), excess, torch.zeros_like(excess))
    static_excess = torch.stack([torch.quantile(e[v], DEPTH_TRUST_QUANTILE) if bool(f and v.any())
                                 else e.new_tensor(float("nan")) for e, v, f in zip(excess, valid, fitted.tolist())])
    parallax = torch.linalg.vector_norm(reached(inverse) - reached(torch.zeros_like(inverse)), dim=1)
    parallax = torch.where(fitted.view(-1, 1, 1), parallax, torch.full_like(parallax, float("inf")))
    return StaticDepthDistance(ray, excess, static_excess, parallax)


def colour_guided_fill(score: Tensor, reliable: Tensor, image: Tensor, where: Tensor) -> Tensor:
    """``(B, H, W)``: ``score`` where ``where`` is False; elsewhere the mean of ``score`` over the ``reliable`` pixels
    around that have the pixel's colour in ``image`` (``(B, 3, H, W)`` in [0, 1]), pulled towards :data:`UNDECIDED`
    where there are few.

    A normalised convolution with a joint-bilateral kernel (:data:`FILL_RADIUS`, :data:`FILL_SIGMA_SPACE`,
    :data:`FILL_SIGMA_COLOUR`) and :data:`UNDECIDED` as a prior of weight :data:`FILL_PRIOR_WEIGHT`. Where the optical
    flow fails its forward-backward check, the flow of the same surface next to it still speaks: the untextured body
    of a car takes the say of its edges, a strip of road its car uncovers takes the road's.
    """
    radius = FILL_RADIUS
    batch, height, width = score.shape
    steps = torch.arange(-radius, radius + 1, device=score.device)
    dy, dx = (d.flatten() for d in torch.meshgrid(steps, steps, indexing="ij"))
    near = torch.exp(-(dy.square() + dx.square()).to(score.dtype) / (2.0 * FILL_SIGMA_SPACE ** 2))
    padded_width = width + 2 * radius
    offsets = dy * padded_width + dx  # (taps,) in the padded image's flat index
    pad = (radius,) * 4
    colours = F.pad(image.to(score.dtype), pad, mode="replicate").flatten(2)  # (B, 3, P)
    weights = F.pad(reliable.to(score.dtype), pad).flatten(1)  # (B, P): padding is not trusted
    scores = F.pad(score * reliable.to(score.dtype), pad).flatten(1)
    filled = score.clone()
    for i in range(batch):
        y, x = torch.nonzero(where[i], as_tuple=True)
        if y.numel() == 0:
            continue
        centre = (y + radius) * padded_width + (x + radius)
        taps = centre[:, None] + offsets[None, :]  # (N, taps)
        difference = (colours[i][:, taps] - colours[i][:, centre][:, :, None]).square().sum(dim=0)
        kernel = near[None, :] * torch.exp(-difference / (2.0 * FILL_SIGMA_COLOUR ** 2)) * weights[i][taps]
        total = (kernel * scores[i][taps]).sum(dim=1) + FILL_PRIOR_WEIGHT * UNDECIDED
        filled[i, y, x] = total / (kernel.sum(dim=1) + FILL_PRIOR_WEIGHT)
    return filled


def chain_flow(flow: Tensor, valid: Tensor, earlier_flow: Tensor, earlier_valid: Tensor) -> tuple[Tensor, Tensor]:
    """``(flow, valid)`` from each target pixel to an earlier frame: ``flow`` (target -> source) followed by
    ``earlier_flow`` (source -> earlier) sampled bilinearly where the pixel went; trusted where both are (all four
    samples of the second)."""
    onward = sample_along_flow(earlier_flow, flow, "border")
    trusted = sample_along_flow(earlier_valid[:, None], flow, "zeros")[:, 0]
    return flow + onward, valid & (trusted > 1.0 - 1e-3)


def sample_along_flow(values: Tensor, flow: Tensor, padding_mode: str) -> Tensor:
    """``(B, C, H, W)``: the source frame's ``values`` ``(B, C, H, W)`` where each target pixel went by the
    ``(B, 2, H, W)`` target -> source ``flow`` in pixels (bilinear; outside the image ``grid_sample``'s
    ``padding_mode``), in the flow's dtype."""
    _, _, height, width = flow.shape
    where = pixel_grid(height, width, device=flow.device, dtype=flow.dtype)[:2] + flow  # (B, 2, H, W) in the source
    grid = torch.stack([2.0 * where[:, 0] / max(width - 1, 1) - 1.0, 2.0 * where[:, 1] / max(height - 1, 1) - 1.0],
                       dim=-1)
    return F.grid_sample(values.to(flow.dtype), grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def continues_stream(previous_target: Tensor | None, source: Tensor) -> bool:
    """Whether a frame pair whose earlier frame is ``source`` continues the stream whose last pair ended at
    ``previous_target`` (the same image, not merely a similar one)."""
    return (previous_target is not None and previous_target.shape == source.shape
            and previous_target.device == source.device and torch.equal(previous_target, source))


class FlowChain:
    """The optical flow from a stream's newest frame to each of its last ``frames`` frames, each frame pair's flow
    chained onto the previous frame's chain (:func:`chain_flow`): DIS on frames further apart loses the larger
    motions, the chain follows them a frame at a time.

    A frame pair continues the stream when its source is the previous pair's target; any other pair starts a new one.
    """

    def __init__(self, frames: int = LONG_BASELINE_FRAMES):
        if frames < 1:
            raise ValueError(f"a flow chain spans at least one frame pair, got {frames}")
        self.frames = frames
        self._target: Tensor | None = None
        self._flows: list[tuple[Tensor, Tensor]] = []  # (flow, valid) to the frames 1, 2, ... back

    def extend(self, target: Tensor, source: Tensor, flow: Tensor, valid: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Add the pair's ``(flow, valid)`` (:func:`dense_flow` of ``target`` to ``source``); returns the flows from
        ``target`` to the frames 1, 2, ... back, as many as the stream has (at most ``frames``)."""
        earlier = self._flows[:self.frames - 1] if continues_stream(self._target, source) else []
        self._flows = [(flow, valid)] + [chain_flow(flow, valid, f, v) for f, v in earlier]
        self._target = target
        return list(self._flows)


@dataclass
class EvidenceStream:
    """What :func:`stream_evidence` keeps from one frame of a stream to the next: the :class:`DepthTrust` of the frame
    pairs and of the long baseline (their static excess differs in scale), and the :class:`FlowChain`."""

    trust: DepthTrust = field(default_factory=DepthTrust)
    long_trust: DepthTrust = field(default_factory=DepthTrust)
    chain: FlowChain = field(default_factory=FlowChain)


@dataclass
class SightedEvidence:
    """:func:`stream_evidence`: ``score`` ``(B, H, W)`` in [0, 1) how surely each pixel moves by the frames; ``sight``
    ``(B, H, W)`` in [0, 1] how far they could show a mover that keeps to its epipolar line (a car ahead at the
    camera's speed, one coming straight on): a static point's parallax at the pixel's depth against the threshold.
    Where it is 0 the frames cannot tell such a mover from the static world; only its look can."""

    score: Tensor
    sight: Tensor
    flow: Tensor | None = None  # (B, 2, H, W) the frame pair's target -> source flow (stream_evidence's)
    valid: Tensor | None = None  # (B, H, W) where it is trusted


def flow_evidence(flow: Tensor, valid: Tensor, target: Tensor, intrinsics: Tensor, threshold: float, window: int,
                  depth: Tensor | None, trust: DepthTrust) -> SightedEvidence:
    """:func:`stream_evidence` of one ``(flow, valid)`` from ``target`` to a source frame."""
    still = camera_still(flow, valid)
    transform = flow_ego_motion(flow, valid, intrinsics, still)
    intrinsics = intrinsics.float()
    if depth is None:
        distance = epipolar_ray_distance(flow, transform, intrinsics)
        sight = torch.ones_like(distance)
    else:
        consistency = static_depth_distance(flow, valid, transform, intrinsics, depth)
        believed = trust(consistency.static_excess, threshold)
        distance = consistency.distance(believed)
        sight = consistency.sight(believed, threshold)
    mean_distance, reliable = window_distance(distance, valid, window)
    score = 1.0 - torch.exp2(-mean_distance / threshold)
    return SightedEvidence(colour_guided_fill(score, reliable, target, ~reliable), sight)


def flow_motion_evidence(target: Tensor, source: Tensor, intrinsics: Tensor, depth: Tensor, threshold: float,
                         window: int, flow: tuple[Tensor, Tensor] | None = None) -> MotionEvidence:
    """:func:`motion_evidence` as the predictor measures it (``loss.motion_evidence_ego: flow``): by the score of
    :func:`flow_evidence` under the flow's own ego-motion and the model's ``depth`` (detached; trusted as far as
    this batch's static world says), moving where it exceeds 0.5 (a window mean distance beyond ``threshold``),
    static where the camera stands and it stays below :data:`STATIC_FRACTION` of that distance."""
    flow, valid = dense_flow(target, source) if flow is None else flow
    score = flow_evidence(flow, valid, target, intrinsics, threshold, window, depth.detach(), DepthTrust()).score
    still = camera_still(flow, valid)
    return MotionEvidence(moving=score > 0.5, static=(score < 1.0 - 2.0 ** -STATIC_FRACTION) & still[:, None, None],
                          still=still)


def stream_evidence(target: Tensor, source: Tensor, intrinsics: Tensor, threshold: float, window: int,
                    depth: Tensor | None = None, stream: EvidenceStream | None = None) -> SightedEvidence:
    """How surely each target pixel moves by the frames (and the model's depth), for inference, and how far the
    frames can see it (:class:`SightedEvidence`).

    The score is ``1 - 2^(-d / threshold)`` of the window mean ``d`` (over the trusted flow) of its distance from
    where a static point can go under the flow's own ego-motion (:func:`flow_ego_motion`): anywhere on the half
    of its epipolar line static points reach without ``depth`` (:func:`epipolar_ray_distance`), near the depth's
    point on it with (:func:`static_depth_distance`, as far as the stream's :class:`DepthTrust` believes it).
    0.5 at the threshold. Where the flow is not forward-backward consistent or leaves the image (occlusions, a car
    entering the view, flow DIS cannot follow), the score of the trusted pixels of the same colour around
    (:func:`colour_guided_fill`; :data:`UNDECIDED` where there are none). With a ``stream`` whose previous frame
    pair ended at ``source``, the mean of that and of the same score over the flow chained
    :data:`LONG_BASELINE_FRAMES` frames back (threshold times :data:`LONG_BASELINE_THRESHOLD`; fewer frames at the
    stream's start), and the sight of the longer baseline. The predictor weighs the score with the masks' moving
    probability where the frames see, and leaves the rest to the masks.

    Args:
        target, source: ``(B, 3, H, W)`` images in [0, 1].
        intrinsics: ``(B, 3, 3)``.
        threshold: pixels.
        window: odd window size in pixels for the mean.
        depth: ``(B, 1, H, W)`` the model's depth of the target (any scale), or None (then the sight is 1).
        stream: what the frames before kept (a predictor's); None: these two frames alone.
    """
    stream = stream or EvidenceStream()
    flow, valid = dense_flow(target, source)
    pair = flow_evidence(flow, valid, target, intrinsics, threshold, window, depth, stream.trust)
    chained = stream.chain.extend(target, source, flow, valid)
    if len(chained) < 2:
        return SightedEvidence(pair.score, pair.sight, flow, valid)
    far = flow_evidence(*chained[-1], target, intrinsics, threshold * LONG_BASELINE_THRESHOLD, window, depth,
                        stream.long_trust)
    return SightedEvidence(0.5 * (pair.score + far.score), far.sight, flow, valid)


def moving_evidence(target: Tensor, source: Tensor, intrinsics: Tensor, threshold: float, window: int,
                    depth: Tensor | None = None, stream: EvidenceStream | None = None) -> Tensor:
    """``(B, H, W)`` in [0, 1): the score of :func:`stream_evidence` (same arguments)."""
    return stream_evidence(target, source, intrinsics, threshold, window, depth, stream).score
