"""Metric scale from the camera's mounting height: the ground plane fixes monocular depth's scale.

Self-supervised monocular depth is right up to one unknown factor. A vehicle knows how high its
camera is mounted, and the road in front of it is visible in almost every frame, so:

1. back-project the frame's depth (eq. 4) and fit a plane to the points of the lower image rows
   (RANSAC, optionally only over pixels the motion model calls static; :func:`fit_ground_plane`);
2. refuse a plane whose normal is more than ``max_tilt`` degrees from the expected up axis (the
   camera's ``-y`` axis, tilted by the expected pitch): a wall or a car is not the road;
3. the plane's distance to the camera centre is the camera height in depth units, so the scale is
   ``camera_height / distance`` (metres per depth unit) (:func:`camera_height_scale`);
4. smooth it over time with a running median (:class:`ScaleTracker`); a frame without an
   acceptable plane keeps the last good scale and is counted.

The camera frame is the optical one (x right, y down, z forward); a positive pitch looks down.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mds_core.method.geometry import backproject


@dataclass(frozen=True)
class GroundPlane:
    """``n . X = d`` in the camera frame: unit normal ``n`` (pointing up, away from the road) and the
    camera centre's distance ``d`` to the plane, in depth units; ``inliers``: fraction of the fitted
    points within the tolerance."""

    normal: np.ndarray
    distance: float
    inliers: float

    def tilt_degrees(self, pitch_degrees: float = 0.0) -> float:
        """Angle between the normal and the up axis expected at ``pitch_degrees``."""
        pitch = math.radians(pitch_degrees)
        expected = np.array([0.0, -math.cos(pitch), -math.sin(pitch)])  # camera up, tilted as it looks down
        return math.degrees(math.acos(float(np.clip(self.normal @ expected, -1.0, 1.0))))


def fit_ground_plane(points: Tensor, valid: Tensor | None = None, bottom_fraction: float = 0.4,
                     iterations: int = 200, tolerance: float = 0.01, seed: int = 0,
                     max_points: int = 4000) -> GroundPlane | None:
    """RANSAC plane through the ``(3, H, W)`` camera points of the bottom ``bottom_fraction`` rows.

    ``valid``: ``(H, W)`` bool, points that may be ground (e.g. static, finite depth). Three points
    span each hypothesis; the one with the most points closer than ``tolerance`` times their median
    depth wins, and is refitted to its inliers by least squares (smallest singular vector). None when
    fewer than 50 points are usable. Hypotheses are scored on at most ``max_points`` of the points
    (an even subsample: a few ms per frame at any resolution); the refit uses all of them.
    """
    height = points.shape[-2]
    rows = max(1, int(bottom_fraction * height))
    candidates = points[:, height - rows:].reshape(3, -1).T.double()
    keep = torch.isfinite(candidates).all(dim=1) & (candidates[:, 2] > 0)
    if valid is not None:
        keep &= valid[height - rows:].reshape(-1).to(keep.device)
    candidates = candidates[keep]
    if candidates.shape[0] < 50:
        return None
    threshold = tolerance * float(candidates[:, 2].median())
    generator = torch.Generator().manual_seed(seed)
    step = max(1, candidates.shape[0] // max_points)
    scored = candidates[::step]
    index = torch.randint(scored.shape[0], (iterations, 3), generator=generator).to(candidates.device)
    triples = scored[index]  # (I, 3, 3)
    normals = torch.linalg.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    lengths = normals.norm(dim=1, keepdim=True)
    usable = lengths[:, 0] > 1e-12
    if not usable.any():
        return None
    normals, triples = normals[usable] / lengths[usable], triples[usable]
    offsets = (normals * triples[:, 0]).sum(dim=1)  # n . X = d
    counts = ((scored @ normals.T - offsets).abs() < threshold).sum(dim=0)  # (I,)
    best = int(counts.argmax())
    inliers = candidates[(candidates @ normals[best] - offsets[best]).abs() < threshold]
    centre = inliers.mean(dim=0)
    normal = torch.linalg.svd(inliers - centre, full_matrices=False).Vh[-1]
    if normal[1] > 0:  # point up: away from the road, toward -y
        normal = -normal
    distance = float(-(normal @ centre))  # the camera (origin) is above the road: n . 0 - d > 0 with d < 0
    return GroundPlane(normal.cpu().numpy(), abs(distance), float(inliers.shape[0]) / candidates.shape[0])


def camera_height_scale(depth: Tensor | np.ndarray, intrinsics: Tensor | np.ndarray, camera_height: float,
                        pitch_degrees: float = 0.0, max_tilt_degrees: float = 15.0,
                        static: Tensor | np.ndarray | None = None, bottom_fraction: float = 0.4,
                        seed: int = 0) -> float | None:
    """Metres per depth unit from one ``(H, W)`` depth map and its ``(3, 3)`` intrinsics, or None when
    no acceptable ground plane is found. ``static``: ``(H, W)`` bool, pixels that may be ground."""
    depth_t = torch.as_tensor(np.asarray(depth, dtype=np.float64) if isinstance(depth, np.ndarray) else depth,
                              dtype=torch.float64)
    k = torch.as_tensor(np.asarray(intrinsics, dtype=np.float64), dtype=torch.float64)
    points = backproject(depth_t[None, None], torch.linalg.inv(k)[None])[0]
    valid = torch.isfinite(depth_t) & (depth_t > 0)
    if static is not None:
        valid &= torch.as_tensor(np.asarray(static, dtype=bool))
    plane = fit_ground_plane(points, valid, bottom_fraction=bottom_fraction, seed=seed)
    if plane is None or plane.distance <= 0 or plane.tilt_degrees(pitch_degrees) > max_tilt_degrees:
        return None
    return camera_height / plane.distance


class ScaleTracker:
    """A running median of the last ``window`` per-frame scales; frames without one keep the current
    scale and are counted (``failures``)."""

    def __init__(self, window: int = 15):
        self._scales: deque[float] = deque(maxlen=window)
        self.failures = 0
        self.updates = 0

    def update(self, scale: float | None) -> float | None:
        """Add a frame's scale (None: not measurable); returns the smoothed scale (None before the first)."""
        if scale is None or not math.isfinite(scale) or scale <= 0:
            self.failures += 1
        else:
            self._scales.append(scale)
            self.updates += 1
        return self.scale

    @property
    def scale(self) -> float | None:
        return float(np.median(self._scales)) if self._scales else None

    @property
    def spread(self) -> float | None:
        """Relative spread of the window: standard deviation over the median."""
        if len(self._scales) < 2:
            return None
        values = np.asarray(self._scales)
        return float(values.std() / np.median(values))

    def reset(self) -> None:
        self._scales.clear()
