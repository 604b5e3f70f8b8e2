"""Scores per situation: how each kind of mover, and the camera standing still, is handled.

A robot at a crossing sees cars moving along the road, traffic crossing its heading, pedestrians,
and it stands still at times. One score over all movers hides which of these a model gets right,
so ``mds eval`` also scores each on its own, where the data say what moves how (the sequence
folders that ``mds synth`` writes: instance ids and object kinds):

* ``along_road``, ``across``, ``pedestrian``: the moving pixels of that category are the positives,
  the static pixels the negatives, movers of the other categories are ignored
  (:data:`CATEGORY_OF_KIND` maps the generator's object kinds to categories);
* ``camera_stopped``: every label of the frames in which the camera did not move.

Each gets the motion segmentation (best F1 and AP, next to the prevalence and the F1 of calling
everything moving) and the depth metrics, whose ``moving`` region is then that situation's movers
(None where no frame had ground-truth depth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mds_core.data.sequence_folder import FrameSituation
from mds_core.evaluation.metrics import IGNORE_LABEL, DepthEvaluation, DepthEvaluator, EvalSettings
from mds_core.evaluation.motion_segmentation import (
    POSITIVE_LABEL,
    MotionSegmentationEvaluator,
    MotionSegmentationResult,
)

#: How a mover moves, by the generator's object kind (:mod:`mds_core.tools.synth.scene`).
CATEGORY_OF_KIND: dict[str, str] = {
    "same_speed": "along_road", "oncoming": "along_road", "faster": "along_road",
    "crossing": "across",
    "pedestrian": "pedestrian", "cyclist": "pedestrian",
}
MOVER_CATEGORIES: tuple[str, ...] = ("along_road", "across", "pedestrian")
SITUATIONS: tuple[str, ...] = (*MOVER_CATEGORIES, "camera_stopped")


def situation_labels(motion: np.ndarray, situation: FrameSituation) -> dict[str, np.ndarray]:
    """The motion labels of each situation present in this frame (see the module docstring)."""
    if motion.shape != situation.instances.shape:
        raise ValueError(f"motion labels {motion.shape} and instances {situation.instances.shape} differ in shape")
    ids = np.array(sorted(situation.kinds), dtype=np.int64)
    categories = np.array([CATEGORY_OF_KIND.get(situation.kinds[i], "") for i in ids.tolist()], dtype=object)
    moving = motion == POSITIVE_LABEL
    labels = {}
    for category in MOVER_CATEGORIES:
        mine = moving & np.isin(situation.instances, ids[categories == category])
        labels[category] = motion.copy()
        labels[category][moving & ~mine] = IGNORE_LABEL
    if not situation.camera_moved:
        labels["camera_stopped"] = motion
    return labels


@dataclass(frozen=True)
class SituationScores:
    motion: MotionSegmentationResult
    depth: DepthEvaluation | None  # None without ground-truth depth


class SituationEvaluator:
    """Motion segmentation and depth per situation, frame by frame."""

    def __init__(self, settings: EvalSettings):
        self._motion = {name: MotionSegmentationEvaluator() for name in SITUATIONS}
        self._depth = {name: DepthEvaluator(settings) for name in SITUATIONS}
        self._frames = dict.fromkeys(SITUATIONS, 0)
        self._depth_frames = dict.fromkeys(SITUATIONS, 0)
        self._movers = dict.fromkeys(SITUATIONS, 0)  # moving pixels seen

    def add(self, situation: FrameSituation, motion: np.ndarray, moving_probability: np.ndarray | None,
            depth: np.ndarray | None, gt_depth: np.ndarray | None, scale: float | None = None) -> None:
        """One frame: ``motion`` labels, the model's ``moving_probability`` (None: depth only) and depth,
        all at the labels' size; ``depth`` or ``gt_depth`` None: motion only."""
        for name, labels in situation_labels(motion, situation).items():
            self._frames[name] += 1
            self._movers[name] += int(np.count_nonzero(labels == POSITIVE_LABEL))
            if depth is not None and gt_depth is not None:
                added = self._depth[name].add(depth, gt_depth, labels, scale=scale)  # False: no valid depth
                self._depth_frames[name] += int(added)
            if moving_probability is not None:
                self._motion[name].add(moving_probability, labels)

    def result(self) -> dict[str, SituationScores]:
        """The situations with moving pixels in at least one frame (a road without crossings has no
        ``across``)."""
        return {name: SituationScores(self._motion[name].result(),
                                      self._depth[name].result() if self._depth_frames[name] else None)
                for name in SITUATIONS if self._movers[name]}
