"""``mds eval``: run a checkpoint over a data set and score it.

Depth: the predicted disparity is resized (bilinear) to the ground-truth size, converted to
depth, and scored with the Eigen metrics (:mod:`mds_core.evaluation.metrics`). When motion
labels exist, the same metrics per region (moving, static movable, static background) and
the motion segmentation of the decomposition against the previous frame: a pixel's moving
probability is ``1 - M_b``, where ``b`` is the background component, chosen per frame as the
component with the largest total mask mass (:func:`mds_core.inference.predictor.background_component`).
The first frame of a sequence (no previous frame) is scored for depth only.

Depth is optional: a frame with motion labels but no ground-truth depth (real footage such as DAVIS,
whose labels come from the object annotation) is scored for motion only, at the labels' size, and
``EvaluationReport.depth`` is None when no frame had depth. Frames with neither are skipped.

Next to that score, ``EvaluationReport.motion_scores`` holds the background-independent
motion-distance score and the split of moving pixels into those that move relative to the camera
and those that move with it (:mod:`mds_core.evaluation.motion_scores`), each scored with both
scores. Where the data say what moves how (``mds synth``'s folders), the same scores per situation:
movers along the road, across it, pedestrians, and frames with the camera standing still
(:mod:`mds_core.evaluation.situations`). Models of the oracle rung "depth" are given the
ground-truth depth, so they need it in every frame scored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from mds_core.config import ConfigError, FootageConfig
from mds_core.data.factory import check_footage_options, open_sequences
from mds_core.data.sequence_folder import DataError, FrameSequence
from mds_core.evaluation.metrics import DepthEvaluator, EvalSettings
from mds_core.evaluation.motion_scores import distance_to_probability, identity_difference, split_moving_labels
from mds_core.evaluation.motion_segmentation import MotionSegmentationEvaluator
from mds_core.evaluation.object_scores import ObjectScoreEvaluator
from mds_core.evaluation.report import EvaluationReport
from mds_core.evaluation.situations import SituationEvaluator
from mds_core.inference.moving_objects import MOVING_THRESHOLD, moving_objects
from mds_core.inference.predictor import Predictor, resize_disparity_to_depth
from mds_core.method.metric_scale import ScaleTracker, camera_height_scale
from mds_core.progress import progress as progress_bar

#: ``score/movers`` keys of ``EvaluationReport.motion_scores``: score ``mask`` (1 - dominant mask),
#: ``distance`` (motion distance relative to depth) or ``flat`` (motion distance at the median depth);
#: movers ``all``, ``relative`` (move relative to the camera) or ``with_camera`` (the un-warped
#: previous frame explains them). See :mod:`mds_core.evaluation.motion_scores`.
MOTION_SCORE_KEYS: tuple[str, ...] = tuple(
    f"{score}/{movers}" for movers in ("all", "relative", "with_camera") for score in ("mask", "distance", "flat")
)


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
    #: Metric scale from the camera height (metres) instead of median scaling: the ground plane of
    #: each predicted depth map, smoothed over the sequence (mds_core.method.metric_scale).
    camera_height: float | None = None
    camera_pitch: float = 0.0  # degrees, positive looking down
    #: The moving objects scored (:mod:`mds_core.evaluation.object_scores`) are found as the node finds them.
    object_threshold: float = MOVING_THRESHOLD
    object_min_pixels: int = 20
    #: Real footage (``data_format`` kitti_odometry, davis, video): camera, subsampling, sequences.
    footage: FootageConfig | None = None
    #: The moving probability with the optical flow's evidence (the predictor's default); False: the masks'
    #: alone, as in the paper (:class:`~mds_core.inference.predictor.Predictor`).
    motion_evidence: bool = True


def evaluation_frames(request: EvaluationRequest) -> list[tuple[FrameSequence, int]]:
    """(sequence, frame) pairs to score: every frame, or the lines of a KITTI split."""
    if request.data_format == "kitti" and request.split and request.footage and request.footage.sequences:
        raise ConfigError("--split and --sequence both choose KITTI frames: give one of them")
    if request.data_format == "kitti" and (request.split or not (request.footage and request.footage.sequences)):
        from mds_core.data.kitti import kitti_sequences_and_targets

        check_footage_options("kitti", request.footage or FootageConfig())
        sequences, targets = kitti_sequences_and_targets(request.data, request.split, [])
        frames = [(sequences[t.sequence], t.frame) for t in targets]
    else:
        frames = [(seq, i) for seq in open_sequences(request.data_format, request.data, request.footage)
                  for i in range(len(seq))]
    if request.max_images is not None:
        frames = frames[: request.max_images]
    return frames


def median_scale(depth: np.ndarray, gt_depth: np.ndarray, settings: EvalSettings) -> float:
    """The per-image median scaling factor of ``depth`` against ``gt_depth`` (valid pixels)."""
    valid = (gt_depth > settings.min_depth) & (gt_depth < settings.max_depth)
    return float(np.median(gt_depth[valid])) / float(np.median(depth[valid]))


def scoring_size(gt_depth: np.ndarray | None, motion: np.ndarray | None, image: np.ndarray) -> tuple[int, int]:
    """``(height, width)`` at which a frame is scored: the ground-truth depth's, else the motion labels', else the
    image's."""
    reference = gt_depth if gt_depth is not None else motion if motion is not None else image
    height, width = reference.shape[:2]
    return height, width


def camera_height_summary(trackers: dict[str, ScaleTracker], errors: list[float]) -> dict[str, object]:
    """What the camera-height scaling did: its error against median scaling, frames without a plane."""
    absolute = np.abs(errors) if errors else np.array([np.nan])
    return {"scaling": "camera height (ground plane, running median per sequence)",
            "camera_height_scale_error_median": float(np.median(absolute)),
            "camera_height_scale_error_mean": float(np.mean(absolute)),
            "camera_height_frames_without_plane": sum(t.failures for t in trackers.values())}


def run_evaluation(request: EvaluationRequest, progress: bool = True,
                   predictor: Predictor | None = None) -> EvaluationReport:
    predictor = predictor or Predictor.from_checkpoint(request.checkpoint, device=request.device,
                                                       motion_evidence=request.motion_evidence)
    by_height = request.camera_height is not None
    settings = EvalSettings(min_depth=request.min_depth, max_depth=request.max_depth,
                            eigen_crop=request.eigen_crop, median_scaling=request.fixed_scale is None and not by_height,
                            fixed_scale=request.fixed_scale,
                            external_scale=f"camera height {request.camera_height:g} m (ground plane)" if by_height
                            else "")
    depth_evaluator = DepthEvaluator(settings)
    motion_evaluator = MotionSegmentationEvaluator()
    score_evaluators = {key: MotionSegmentationEvaluator() for key in MOTION_SCORE_KEYS}
    object_evaluator = ObjectScoreEvaluator(request.object_threshold, request.object_min_pixels)
    situation_evaluator = SituationEvaluator(settings)
    frames = evaluation_frames(request)
    with_labels = 0
    with_depth = 0
    unsegmented = 0
    cfg = predictor.config
    trackers: dict[str, ScaleTracker] = {}
    scale_errors: list[float] = []  # camera-height scale / median-scaling scale - 1, per image
    for sequence, index in progress_bar(frames, desc="eval", enabled=progress):
        gt_depth = sequence.depth(index)
        motion = sequence.motion(index)
        if gt_depth is None and (motion is None or index == 0):
            continue  # nothing to score: no depth, and no motion labels with a previous frame
        if gt_depth is None and predictor.num_components < 2:
            unsegmented += 1  # motion labels only, and a model that segments no motion (K=1)
            continue
        if gt_depth is None and not predictor.model.uses_depth_network:
            raise DataError(f"{sequence.name} frame {sequence.frame_id(index)} has no ground-truth depth, which this "
                            f"model takes as its depth (model.depth_source: ground_truth, the oracle rung)")
        intrinsics, _ = sequence.intrinsics()
        image = sequence.image(index)
        previous = sequence.image(index - 1) if index > 0 else None
        oracle = None if predictor.model.uses_depth_network else gt_depth
        following = None  # the scene-flow model's motion mask needs the next frame (none at a sequence's end)
        if predictor.uses_scene_flow and index + 1 < len(sequence):
            following = sequence.image(index + 1)
        prediction = predictor.predict(image, intrinsics, previous, ground_truth_depth=oracle, following=following)
        height, width = scoring_size(gt_depth, motion, image)
        depth = None
        if gt_depth is not None:
            depth = resize_disparity_to_depth(prediction.disparity, (width, height), cfg.min_depth, cfg.max_depth)
        split = None
        if motion is not None and previous is not None:
            split = split_moving_labels(motion, identity_difference(image, previous))
        scale = None
        if request.camera_height is not None:
            tracker = trackers.setdefault(sequence.name, ScaleTracker())
            static = None if prediction.moving_probability is None else prediction.moving_probability < 0.5
            scale = tracker.update(camera_height_scale(prediction.depth, prediction.intrinsics, request.camera_height,
                                                       request.camera_pitch, static=static))
            if scale is not None and depth is not None and gt_depth is not None:
                scale_errors.append(scale / median_scale(depth, gt_depth, settings) - 1.0)
        if request.camera_height is not None and scale is None:
            depth = None  # no ground plane yet in the sequence: depth not scored
        if depth is not None and gt_depth is not None and depth_evaluator.add(
                depth, gt_depth, motion, None if split is None else split.moves_with_camera, scale=scale):
            with_depth += 1
        situation = getattr(sequence, "situation", lambda _: None)(index) if split is not None else None
        moving = None
        if prediction.moving_probability is not None:
            moving = np.clip(cv2.resize(prediction.moving_probability, (width, height), interpolation=cv2.INTER_LINEAR),
                             0.0, 1.0)
        # situations: with the depth where it is scored; without ground-truth depth, the motion alone
        if situation is not None and motion is not None and (depth is not None or (gt_depth is None and
                                                                                   moving is not None)):
            situation_evaluator.add(situation, motion, moving, depth, gt_depth, scale=scale)
        if split is not None and moving is not None and motion is not None:
            motion_evaluator.add(moving, motion)
            distance = cv2.resize(prediction.motion_distance, (width, height), interpolation=cv2.INTER_LINEAR)
            flat = cv2.resize(prediction.flat_motion_distance, (width, height), interpolation=cv2.INTER_LINEAR)
            scores = {"mask": moving,
                      "distance": np.clip(distance_to_probability(np.maximum(distance, 0.0)), 0.0, 1.0),
                      "flat": np.clip(distance_to_probability(np.maximum(flat, 0.0)), 0.0, 1.0)}
            for key in MOTION_SCORE_KEYS:
                score, subset = key.split("/")
                labels = {"all": motion, "relative": split.relative, "with_camera": split.with_camera}[subset]
                score_evaluators[key].add(scores[score], labels)
            objects = moving_objects(prediction, 1.0, min_pixels=request.object_min_pixels,
                                     threshold=request.object_threshold)
            object_evaluator.add(objects, motion, prediction.depth.shape)
            with_labels += 1
    if not with_depth and not with_labels and unsegmented:
        raise DataError(f"{request.data}: its frames have motion labels but no ground-truth depth, and this model "
                        f"segments no motion (one component): nothing to score")
    if not with_depth and not with_labels:
        raise DataError(f"{request.data}: no frame has ground-truth depth or motion labels (mds eval scores depth "
                        f"or motion labels; footage without them can go through mds infer or mds odometry)")
    return EvaluationReport(
        depth=depth_evaluator.result() if with_depth else None,
        motion=motion_evaluator.result() if with_labels else None,
        motion_scores={key: e.result() for key, e in score_evaluators.items()} if with_labels else {},
        objects=object_evaluator.result() if with_labels else None,
        situations=situation_evaluator.result(),
        metadata={
            "checkpoint": str(request.checkpoint),
            "request": asdict(request),
            "model": asdict(cfg),
            "background_component": ("the ego-motion (scene flow)" if predictor.uses_scene_flow
                                     else "largest total mask mass per frame"),
            **(camera_height_summary(trackers, scale_errors) if request.camera_height is not None else {}),
        },
    )
