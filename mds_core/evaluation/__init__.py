"""Evaluation: depth metrics (overall and per motion region), motion segmentation, reports."""

from mds_core.evaluation.metrics import (
    IGNORE_LABEL,
    REGION_LABELS,
    DepthEvaluation,
    DepthEvaluator,
    DepthMetrics,
    EvalSettings,
    ScaleStats,
    compute_depth_errors,
    eigen_crop_mask,
)
from mds_core.evaluation.motion_segmentation import MotionSegmentationEvaluator, MotionSegmentationResult
from mds_core.evaluation.report import EvaluationReport, json_safe

__all__ = [
    "IGNORE_LABEL",
    "REGION_LABELS",
    "DepthEvaluation",
    "DepthEvaluator",
    "DepthMetrics",
    "EvalSettings",
    "EvaluationReport",
    "MotionSegmentationEvaluator",
    "MotionSegmentationResult",
    "ScaleStats",
    "compute_depth_errors",
    "eigen_crop_mask",
    "json_safe",
]
