"""``mds eval``: run a checkpoint over a data set and score it.

Depth: the predicted disparity is resized (bilinear) to the ground-truth size, converted to
depth, and scored with the Eigen metrics (:mod:`mds_core.evaluation.metrics`). When motion
labels exist, the same metrics per region (moving, static movable, static background) and
the motion segmentation of the decomposition against the previous frame: a pixel's moving
probability is ``1 - M_b``, where ``b`` is the background component, chosen per frame as the
component with the largest total mask mass (:func:`mds_core.inference.predictor.background_component`).
The first frame of a sequence (no previous frame) is scored for depth only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from mds_core.data.sequence_folder import DataError, FrameSequence, find_sequences
from mds_core.evaluation.metrics import DepthEvaluator, EvalSettings
from mds_core.evaluation.motion_segmentation import MotionSegmentationEvaluator
from mds_core.evaluation.report import EvaluationReport
from mds_core.inference.predictor import Predictor, resize_disparity_to_depth
from mds_core.progress import progress as progress_bar


@dataclass
class EvaluationRequest:
    checkpoint: str
    data: str
    data_format: str = "folder"
    split: str | None = None
    eigen_crop: bool = False
    fixed_scale: float | None = None
    min_depth: float = 1e-3
    max_depth: float = 80.0
    device: str = "auto"
    max_images: int | None = None


def evaluation_frames(request: EvaluationRequest) -> list[tuple[FrameSequence, int]]:
    """(sequence, frame) pairs to score: every frame, or the lines of a KITTI split."""
    if request.data_format == "kitti":
        from mds_core.data.kitti import kitti_sequences_and_targets

        sequences, targets = kitti_sequences_and_targets(request.data, request.split, [])
        frames = [(sequences[t.sequence], t.frame) for t in targets]
    else:
        frames = [(seq, i) for seq in find_sequences(request.data) for i in range(len(seq))]
    if request.max_images is not None:
        frames = frames[: request.max_images]
    return frames


def run_evaluation(request: EvaluationRequest, progress: bool = True,
                   predictor: Predictor | None = None) -> EvaluationReport:
    predictor = predictor or Predictor.from_checkpoint(request.checkpoint, device=request.device)
    settings = EvalSettings(min_depth=request.min_depth, max_depth=request.max_depth,
                            eigen_crop=request.eigen_crop, median_scaling=request.fixed_scale is None,
                            fixed_scale=request.fixed_scale)
    depth_evaluator = DepthEvaluator(settings)
    motion_evaluator = MotionSegmentationEvaluator()
    frames = evaluation_frames(request)
    with_labels = 0
    cfg = predictor.config
    for sequence, index in progress_bar(frames, desc="eval", enabled=progress):
        gt_depth = sequence.depth(index)
        if gt_depth is None:
            raise DataError(f"{sequence.name} frame {sequence.frame_id(index)} has no ground-truth depth")
        intrinsics, _ = sequence.intrinsics()
        image = sequence.image(index)
        previous = sequence.image(index - 1) if index > 0 else None
        prediction = predictor.predict(image, intrinsics, previous)
        gt_h, gt_w = gt_depth.shape
        depth = resize_disparity_to_depth(prediction.disparity, (gt_w, gt_h), cfg.min_depth, cfg.max_depth)
        motion = sequence.motion(index)
        depth_evaluator.add(depth, gt_depth, motion)
        if motion is not None and prediction.moving_probability is not None:
            moving = cv2.resize(prediction.moving_probability, (gt_w, gt_h), interpolation=cv2.INTER_LINEAR)
            motion_evaluator.add(np.clip(moving, 0.0, 1.0), motion)
            with_labels += 1
    return EvaluationReport(
        depth=depth_evaluator.result(),
        motion=motion_evaluator.result() if with_labels else None,
        metadata={
            "checkpoint": str(request.checkpoint),
            "request": asdict(request),
            "model": asdict(cfg),
            "background_component": "largest total mask mass per frame",
        },
    )
