"""Object-level scores of the moving objects a node shows (``~/components``).

Pixel scores (:mod:`mds_core.evaluation.motion_segmentation`) say how well the moving probability
ranks pixels; a robot sees objects. For every labelled frame:

* the shown objects are :func:`~mds_core.inference.moving_objects.moving_objects` of the prediction
  (regions of moving probability >= ``threshold`` with at least ``min_pixels`` pixels at the
  model's resolution), resized to the labels' resolution;
* an object is **on a moving object** when more than half of its labelled pixels are moving
  (label 1; labels 0 and 2 are static, anything else is ignored);
* the labels' moving objects are the 8-connected regions of moving pixels with at least
  ``min_pixels`` pixels (scaled from the model's resolution to the labels'); one is **found** when
  a single shown object covers more than half of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mds_core.evaluation.motion_segmentation import NEGATIVE_LABELS, POSITIVE_LABEL
from mds_core.inference.moving_objects import MovingObject, moving_regions


@dataclass(frozen=True)
class ObjectScores:
    threshold: float
    min_pixels: int  # at the model's resolution
    shown: int  # objects shown over all frames
    on_moving: int  # of them, mostly on moving pixels
    moving: int  # moving objects in the labels
    found: int  # of them, mostly covered by one shown object
    images: int

    @property
    def precision(self) -> float:
        return self.on_moving / self.shown if self.shown else float("nan")

    @property
    def recall(self) -> float:
        return self.found / self.moving if self.moving else float("nan")


class ObjectScoreEvaluator:
    def __init__(self, threshold: float, min_pixels: int = 20):
        self.threshold, self.min_pixels = threshold, min_pixels
        self._counts = np.zeros(5, dtype=np.int64)  # shown, on_moving, moving, found, images

    def add(self, objects: list[MovingObject], labels: np.ndarray, model_shape: tuple[int, int]) -> None:
        """One frame: its shown objects, its motion labels (any resolution) and the model's ``(h, w)``."""
        height, width = labels.shape
        shown = [cv2.resize(obj.mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
                 for obj in objects]
        moving = labels == POSITIVE_LABEL
        labelled = moving | np.isin(labels, NEGATIVE_LABELS)
        on_moving = sum(int(moving[mask].sum() > 0.5 * labelled[mask].sum()) for mask in shown)
        min_pixels = self.min_pixels * labels.size / (model_shape[0] * model_shape[1])
        truth = moving_regions(moving.astype(np.float32), 0.5, max(1, round(min_pixels)))
        found = sum(int(any((mask & region).sum() > 0.5 * region.sum() for mask in shown)) for region in truth)
        self._counts += [len(shown), on_moving, len(truth), found, 1]

    def result(self) -> ObjectScores:
        shown, on_moving, moving, found, images = (int(v) for v in self._counts)
        return ObjectScores(self.threshold, self.min_pixels, shown, on_moving, moving, found, images)
