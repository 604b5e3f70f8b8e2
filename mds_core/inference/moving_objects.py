"""The moving parts of a prediction as objects: where each one is and how fast it moves.

What a robot wants from the decomposition is a short list of things that move on their own, each
with a 3D position and a velocity. :func:`moving_objects` turns one :class:`Prediction` into that list.
Both motion models find the objects the same way: the connected regions of pixels whose moving
probability (the scene flow's motion mask; one minus the background component's mask for the
components model) is at least ``threshold``, each with at least ``min_pixels`` pixels. A region's
centroid is the median of its pixels' 3D points (camera frame). Its own velocity:

* components model: the region moves with the component (other than the background) that holds
  most of its mask mass, ``T_k``. How far ``T_k`` carries the centroid beyond where the camera's
  motion alone would put it is the region's own motion: a point ``c`` of the current frame was at
  ``T_k^-1 c`` in the previous camera frame; had it stood still, it would now be at ``E T_k^-1 c``
  (``E`` the ego-motion), so it moved ``c - E T_k^-1 c`` by itself over the frame gap.
* scene-flow model: the median of the region's independent flow (the 3D motion toward the next
  frame that the ego-motion does not explain) over the gap to the next frame.

Regions rather than argmax components: on the held-out drives of the ``cpu`` preset a K=5 model's
argmax components found none of the labelled moving objects and sat on static structure, while its
regions of moving probability >= 0.3 found 36 of 86, 36 of the 67 shown lying on moving objects
(``mds eval`` reports these object scores).

Positions and velocities are in the camera frame of the described image, in the depth's units times
``scale`` (metres and m/s with a metric scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from mds_core.inference.predictor import Prediction
from mds_core.method.geometry.camera import inverse_camera_matrix

#: Default moving probability from which a pixel belongs to a moving region (the ``cpu`` preset's
#: models are most accurate per pixel from 0.21-0.31 on: ``best_threshold`` of ``mds eval``).
MOVING_THRESHOLD = 0.3
#: Pixels a region's centroid, main component and flow are taken from, at most (larger regions: an
#: even grid; the median of a whole 640x192 image took 6 ms a frame in the node, 1024 take 0.1 ms)
REGION_SAMPLES = 1024
#: Up to this many regions each is counted with its own mask; more at once by a histogram of the labels.
FEW_REGIONS = 8


@dataclass(frozen=True)
class MovingObject:
    """One independently moving part of the scene."""

    id: int  # 1-based index of its region in this frame
    centroid: np.ndarray  # (3,) median 3D point, camera frame
    velocity: np.ndarray  # (3,) own motion per second, camera frame (the camera's motion removed)
    pixels: int  # how many pixels it covers at the model resolution
    component: int  # the component it moves with (components model); 1, "moving" (scene flow)
    mask: np.ndarray = field(repr=False, compare=False)  # (h, w) bool, its pixels at the model resolution

    @property
    def speed(self) -> float:
        return float(np.linalg.norm(self.velocity))


def moving_regions(probability: np.ndarray, threshold: float = MOVING_THRESHOLD,
                   min_pixels: int = 20) -> list[np.ndarray]:
    """The 8-connected regions of ``probability >= threshold`` with at least ``min_pixels`` pixels."""
    return [region.mask for region in _regions(np.asarray(probability) >= threshold, min_pixels)]


@dataclass(frozen=True)
class _Region:
    mask: np.ndarray  # (h, w) bool
    pixels: int
    sample: tuple[np.ndarray, np.ndarray]  # rows, columns: all its pixels, or an even subsample of REGION_SAMPLES


def _regions(moving: np.ndarray, min_pixels: int) -> list[_Region]:
    """The 8-connected regions of the boolean image ``moving`` with at least ``min_pixels`` pixels."""
    if np.count_nonzero(moving) < min_pixels:
        return []
    # 16-bit labels only (half the time of 32-bit ones), areas by counting: a third of the time of
    # OpenCV's per-pixel statistics; a few regions are counted one by one, many at once
    count, labels = cv2.connectedComponents(moving.view(np.uint8), connectivity=8,
                                            ltype=cv2.CV_16U if moving.size < 65536 else cv2.CV_32S)
    areas = np.bincount(labels.reshape(-1), minlength=count) if count > FEW_REGIONS else None
    candidates = range(1, count) if areas is None else (np.flatnonzero(areas[1:] >= min_pixels) + 1).tolist()
    regions = []
    for index in candidates:
        mask = labels == index
        area = int(np.count_nonzero(mask) if areas is None else areas[index])
        if area < min_pixels:
            continue
        x, y, width, height = cv2.boundingRect(mask.view(np.uint8))
        # an even grid of about REGION_SAMPLES of its pixels (all of a small region), then at most that many
        stride = max(1, math.isqrt(area // REGION_SAMPLES))
        rows, cols = np.nonzero(mask[y:y + height:stride, x:x + width:stride])
        step = -(-len(rows) // REGION_SAMPLES)
        regions.append(_Region(mask, area, (rows[::step] * stride + y, cols[::step] * stride + x)))
    return regions


def moving_objects(prediction: Prediction, seconds: float, scale: float = 1.0, min_pixels: int = 20,
                   threshold: float = MOVING_THRESHOLD) -> list[MovingObject]:
    """The moving objects of ``prediction`` (empty without masks); ``seconds`` is the frame gap the
    motions span, ``scale`` converts depth units to the wanted units."""
    if prediction.moving_probability is None or prediction.transforms is None or not seconds > 0 \
            or not (math.isfinite(scale) and scale > 0):
        return []
    depth = prediction.depth
    moving = np.asarray(prediction.moving_probability) >= threshold
    moving &= depth > 0  # false where the depth is NaN too
    moving &= depth < np.inf
    regions = _regions(moving, min_pixels)
    inverse = inverse_camera_matrix(prediction.intrinsics)
    own_velocity = _flow_velocity if prediction.independent_flow is not None else _component_velocity
    objects = []
    for index, region in enumerate(regions, start=1):
        rows, cols = region.sample
        z = depth[rows, cols].astype(np.float64) * scale
        points = inverse @ np.stack([cols, rows, np.ones(len(rows))]) * z  # eq. (4), (3, n)
        centroid = _median(points)
        component, velocity = own_velocity(prediction, region.sample, centroid, seconds, scale)
        objects.append(MovingObject(index, centroid, velocity, region.pixels, component, region.mask))
    return objects


def _component_velocity(prediction: Prediction, pixels: tuple[np.ndarray, np.ndarray], centroid: np.ndarray,
                        seconds: float, scale: float) -> tuple[int, np.ndarray]:
    mass = prediction.masks[:, pixels[0], pixels[1]].sum(axis=1)
    mass[prediction.background] = -1.0
    k = int(mass.argmax())
    ego, motion = (np.asarray(prediction.transforms[i], dtype=np.float64) for i in (prediction.background, k))
    # the centroid where the component's rigid motion T_k came from (T_k^-1 c, previous camera frame), then
    # where the camera's motion alone would have carried it
    previous = motion[:3, :3].T @ (centroid - motion[:3, 3] * scale)
    still = ego[:3, :3] @ previous + ego[:3, 3] * scale
    return k, (centroid - still) / seconds


def _flow_velocity(prediction: Prediction, pixels: tuple[np.ndarray, np.ndarray], centroid: np.ndarray,
                   seconds: float, scale: float) -> tuple[int, np.ndarray]:
    flow = prediction.independent_flow[:, pixels[0], pixels[1]].astype(np.float64) * scale  # (3, n)
    return 1, _median(flow) / seconds


def _median(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=1)`` of ``(c, n)`` values, n > 0, by one partition (a third of its time)."""
    n = values.shape[1]
    middle = [(n - 1) // 2, n // 2]
    part = np.partition(values, middle, axis=1)
    return (part[:, middle[0]] + part[:, middle[1]]) / 2.0
