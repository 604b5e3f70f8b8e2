"""The moving parts of a prediction as objects: where each one is and how fast it moves.

What a robot wants from the decomposition is a short list of things that move on their own, each
with a 3D position and a velocity. :func:`moving_objects` turns one :class:`Prediction` into that list:

* components model: every component other than the background that owns at least ``min_pixels``
  pixels (its argmax label). Its centroid is the median of its pixels' 3D points (camera frame). Its
  own velocity is how far the component's rigid motion ``T_k`` carries the centroid beyond where the
  camera's motion alone would put it: a point ``c`` of the current frame was at ``T_k^-1 c`` in the
  previous camera frame; had it stood still, it would now be at ``E T_k^-1 c`` (``E`` the ego-motion),
  so it moved ``c - E T_k^-1 c`` by itself over the frame gap.
* scene-flow model: every connected region of pixels whose motion mask exceeds 0.5 with at least
  ``min_pixels`` pixels; its velocity is the median of its independent flow (the 3D motion toward the
  next frame that the ego-motion does not explain) over the gap to the next frame.

Positions and velocities are in the camera frame of the described image, in the depth's units times
``scale`` (metres and m/s with a metric scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from mds_core.inference.predictor import Prediction
from mds_core.method.geometry.camera import backproject


@dataclass(frozen=True)
class MovingObject:
    """One independently moving part of the scene."""

    id: int  # the component's index (components model) or the region's index, 1-based (scene flow)
    centroid: np.ndarray  # (3,) median 3D point, camera frame
    velocity: np.ndarray  # (3,) own motion per second, camera frame (the camera's motion removed)
    pixels: int  # how many pixels it covers at the model resolution

    @property
    def speed(self) -> float:
        return float(np.linalg.norm(self.velocity))


def moving_objects(prediction: Prediction, seconds: float, scale: float = 1.0,
                   min_pixels: int = 20) -> list[MovingObject]:
    """The moving objects of ``prediction`` (empty without masks); ``seconds`` is the frame gap the
    motions span, ``scale`` converts depth units to the wanted units."""
    if prediction.labels is None or not seconds > 0 or not np.isfinite(scale):
        return []
    counts = np.bincount(prediction.labels.ravel(), minlength=2)
    if prediction.independent_flow is not None:
        largest = counts[1]  # every moving pixel together
    else:
        counts[prediction.background] = 0
        largest = counts.max()
    if largest < min_pixels:
        return []  # nothing large enough moves: no back-projection needed
    depth = prediction.depth.astype(np.float64) * scale
    valid = np.isfinite(depth) & (depth > 0)
    inverse = torch.linalg.inv(torch.as_tensor(np.asarray(prediction.intrinsics, dtype=np.float64)))
    points = backproject(torch.from_numpy(np.where(valid, depth, 0.0))[None, None], inverse[None])[0]
    points = points.permute(1, 2, 0).numpy()  # (h, w, 3)
    if prediction.independent_flow is not None:
        return _flow_regions(prediction, points, valid, seconds, scale, min_pixels)
    return _components(prediction, points, valid, seconds, scale, min_pixels)


def _components(prediction: Prediction, points: np.ndarray, valid: np.ndarray, seconds: float, scale: float,
                min_pixels: int) -> list[MovingObject]:
    transforms = np.array(prediction.transforms, dtype=np.float64)
    transforms[:, :3, 3] *= scale
    ego = transforms[prediction.background]
    objects = []
    for k in range(len(transforms)):
        region = (prediction.labels == k) & valid
        if k == prediction.background or region.sum() < min_pixels:
            continue
        centroid = np.median(points[region], axis=0)
        # where the camera's motion alone would have carried the point the component moved here
        still = ego @ np.linalg.inv(transforms[k]) @ np.append(centroid, 1.0)
        objects.append(MovingObject(k, centroid, (centroid - still[:3]) / seconds, int(region.sum())))
    return objects


def _flow_regions(prediction: Prediction, points: np.ndarray, valid: np.ndarray, seconds: float, scale: float,
                  min_pixels: int) -> list[MovingObject]:
    moving = ((prediction.labels == 1) & valid).astype(np.uint8)
    count, regions = cv2.connectedComponents(moving, connectivity=8)
    flow = np.moveaxis(prediction.independent_flow, 0, -1).astype(np.float64) * scale
    objects = []
    for index in range(1, count):
        region = regions == index
        if region.sum() < min_pixels:
            continue
        objects.append(MovingObject(index, np.median(points[region], axis=0),
                                    np.median(flow[region], axis=0) / seconds, int(region.sum())))
    return objects
