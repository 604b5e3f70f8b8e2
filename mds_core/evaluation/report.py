"""Evaluation reports: JSON (machine readable) and Markdown (for humans) renderings.

The JSON holds plain numbers only: NumPy scalars and arrays become floats and lists, NaN and
infinities become ``null``, paths become strings and dataclasses become objects.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mds_core.evaluation.metrics import DepthEvaluation, DepthMetrics
from mds_core.evaluation.motion_segmentation import MotionSegmentationResult
from mds_core.evaluation.situations import SituationScores

if TYPE_CHECKING:  # it imports the predictor, which imports this package
    from mds_core.evaluation.object_scores import ObjectScores

#: Markdown row label -> region key (``None`` = overall, per-image mean).
_ROWS: tuple[tuple[str, str | None], ...] = (
    ("overall", None),
    ("moving", "moving"),
    ("moving, relative to the camera", "moving_relative"),
    ("moving, with the camera", "moving_with_camera"),
    ("static movable", "static_movable"),
    ("static background", "static_background"),
)


def json_safe(value: Any) -> Any:
    """Recursively convert ``value`` to JSON-serialisable plain Python (NaN/inf -> ``None``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_safe(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _scaling(depth: DepthEvaluation) -> str:
    settings = depth.settings
    if settings.external_scale:
        return settings.external_scale
    if settings.fixed_scale is not None:
        return f"fixed x{settings.fixed_scale:g}"
    return "per-image median" if settings.median_scaling else "none"


def _depth_markdown(d: DepthEvaluation | None) -> list[str]:
    """The depth section: the table (overall = per-image mean; regions pooled), scale and settings."""
    if d is None:
        return ["### Depth", "", "depth: not scored (no ground-truth depth)"]
    lines = [
        "### Depth",
        "",
        "| region | abs_rel | sq_rel | rmse | rmse_log | a1 | a2 | a3 | pixels | images |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, key in _ROWS:
        metrics: DepthMetrics | None
        if key is None:
            metrics, pixels, images = d.overall, d.num_valid_pixels, d.num_images
        else:
            metrics = d.regions.get(key)
            pixels, images = d.region_pixels.get(key, 0), d.region_images.get(key, 0)
        values = [_fmt(getattr(metrics, n) if metrics else None) for n in DepthMetrics.names()]
        lines.append(f"| {label} | " + " | ".join(values) + f" | {pixels} | {images} |")
    lines += [
        "",
        "Overall: mean over images. Regions: pooled over all pixels of the region "
        f"({d.num_labelled_images} images with motion labels).",
        "",
        f"Scale factors: median {_fmt(d.scale.median)}, mean {_fmt(d.scale.mean)}, "
        f"std {_fmt(d.scale.std)}, std/median {_fmt(d.scale.std_normalised)} "
        f"over {d.scale.count} images; {d.num_skipped} images without valid ground truth skipped.",
        "",
        f"Settings: valid {d.settings.min_depth:g} < gt < {d.settings.max_depth:g} m, "
        f"Eigen crop {'on' if d.settings.eigen_crop else 'off'}, scaling: {_scaling(d)}.",
    ]
    return lines


def situation_summary(scores: SituationScores) -> dict[str, Any]:
    """A situation's motion summary with the depth of its movers and of the static background."""
    def abs_rel(region: str) -> float | None:
        metrics = None if scores.depth is None else scores.depth.regions.get(region)
        return None if metrics is None else metrics.abs_rel

    frames = scores.motion.num_images if scores.depth is None else scores.depth.num_images
    return {**motion_summary(scores.motion), "frames": frames,
            "movers_abs_rel": abs_rel("moving"), "background_abs_rel": abs_rel("static_background")}


def motion_summary(result: MotionSegmentationResult) -> dict[str, Any]:
    """Best F1, AP and IoU@0.5 with the two chance levels: the prevalence (AP of a random score)
    and the F1 of calling every pixel moving."""
    total = result.num_positive + result.num_negative
    prevalence = result.num_positive / total if total else float("nan")
    return json_safe({
        "best_f1": result.best_f1, "best_threshold": result.best_threshold,
        "average_precision": result.average_precision, "iou_at_05": result.iou_at_05,
        "prevalence": prevalence,
        "all_moving_f1": 2 * prevalence / (1 + prevalence) if total else float("nan"),
        "num_positive": result.num_positive, "num_negative": result.num_negative,
    })


@dataclass
class EvaluationReport:
    """Depth results (None where no frame had ground-truth depth), optional motion segmentation
    results, and free-form metadata (checkpoint, data set, settings, ...)."""

    depth: DepthEvaluation | None
    motion: MotionSegmentationResult | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # "score/movers" -> result (mds_core.evaluation.evaluate.MOTION_SCORE_KEYS); empty without labels
    motion_scores: dict[str, MotionSegmentationResult] = field(default_factory=dict)
    objects: ObjectScores | None = None  # the moving objects a node would show; None without labels
    # situation -> scores (mds_core.evaluation.situations); empty where the data do not say what moves how
    situations: dict[str, SituationScores] = field(default_factory=dict)

    def to_json_dict(self, include_curve: bool = True) -> dict[str, Any]:
        """A JSON-safe dict. ``include_curve`` keeps the precision/recall/F1 arrays."""
        result: dict[str, Any] = {"metadata": json_safe(self.metadata), "depth": json_safe(self.depth)}
        if self.motion is not None:
            motion = json_safe(self.motion)
            if not include_curve:
                for key in ("thresholds", "precision", "recall", "f1"):
                    motion.pop(key)
            result["motion_segmentation"] = motion
        else:
            result["motion_segmentation"] = None
        result["motion_scores"] = {key: motion_summary(value) for key, value in self.motion_scores.items()}
        result["situations"] = {name: situation_summary(scores) for name, scores in self.situations.items()}
        result["moving_objects"] = None if self.objects is None else {
            **json_safe(self.objects), "precision": json_safe(self.objects.precision),
            "recall": json_safe(self.objects.recall)}
        return result

    def to_markdown(self) -> str:
        """A Markdown summary: the depth table (overall = per-image mean; regions pooled), the
        scale statistics and the motion segmentation numbers (with the chance levels)."""
        lines: list[str] = []
        if self.metadata:
            lines += ["## Evaluation", ""]
            for key, value in self.metadata.items():
                lines.append(f"- **{key}**: {json.dumps(json_safe(value))}")
            lines.append("")
        lines += _depth_markdown(self.depth)
        m = self.motion
        if m is not None:
            summary = motion_summary(m)
            lines += [
                "",
                "### Motion segmentation",
                "",
                "| best F1 | best threshold | AP | precision@0.5 | recall@0.5 | F1@0.5 | IoU@0.5 "
                "| moving px | static px | images |",
                "|---|---|---|---|---|---|---|---|---|---|",
                f"| {_fmt(m.best_f1)} | {_fmt(m.best_threshold)} | {_fmt(m.average_precision)} "
                f"| {_fmt(m.precision_at_05)} | {_fmt(m.recall_at_05)} | {_fmt(m.f1_at_05)} "
                f"| {_fmt(m.iou_at_05)} | {m.num_positive} | {m.num_negative} | {m.num_images} |",
                "",
                f"Chance: prevalence {_fmt(summary['prevalence'])} (the AP of a random score), "
                f"all-moving F1 {_fmt(summary['all_moving_f1'])} (the F1 of calling every pixel moving).",
            ]
            if not m.has_positives:
                lines += ["", "No moving pixels in the labels: recall, F1 and AP are undefined."]
        if self.motion_scores:
            lines += [
                "",
                "### Motion scores by kind of mover",
                "",
                "Score `mask`: the moving probability (1 - mask of the largest component, weighed with the "
                "optical flow's evidence unless --no-motion-evidence); `distance`: relative 3D distance between "
                "where the mixture and where the largest component move the pixel. Movers `relative`: the "
                "un-warped previous frame does not explain them; `with_camera`: it does (hidden by auto-masking). "
                "Prevalence = AP of a random score; all-moving F1 = F1 of calling every pixel moving.",
                "",
                "| score / movers | best F1 | AP | prevalence | all-moving F1 | moving px | static px |",
                "|---|---|---|---|---|---|---|",
            ]
            for key, r in self.motion_scores.items():
                summary = motion_summary(r)
                lines.append(f"| {key} | {_fmt(r.best_f1)} | {_fmt(r.average_precision)} | "
                             f"{_fmt(summary['prevalence'])} | {_fmt(summary['all_moving_f1'])} | "
                             f"{r.num_positive} | {r.num_negative} |")
        if self.situations:
            lines += [
                "",
                "### Per situation",
                "",
                "Movers along the road, across it (crossing traffic), pedestrians and cyclists: that kind's moving "
                "pixels against the static ones, the other movers ignored. Camera stopped: the frames in which the "
                "camera did not move. Score `mask`; movers abs_rel: the depth of that situation's moving pixels.",
                "",
                "| situation | best F1 | AP | prevalence | all-moving F1 | moving px | frames | movers abs_rel "
                "| background abs_rel |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for name, scores in self.situations.items():
                summary = situation_summary(scores)
                lines.append(f"| {name} | {_fmt(summary['best_f1'])} | {_fmt(summary['average_precision'])} | "
                             f"{_fmt(summary['prevalence'])} | {_fmt(summary['all_moving_f1'])} | "
                             f"{scores.motion.num_positive} | {summary['frames']} | "
                             f"{_fmt(summary['movers_abs_rel'])} | {_fmt(summary['background_abs_rel'])} |")
        if self.objects is not None:
            o = self.objects
            lines += [
                "",
                "### Moving objects (as ~/components shows them)",
                "",
                f"Connected regions of moving probability >= {o.threshold:g} with at least {o.min_pixels} pixels. "
                "On a moving object: more than half of the object's labelled pixels move. Found: a labelled moving "
                "region (8-connected) more than half covered by one shown object.",
                "",
                "| shown | on a moving object | labelled moving objects | found | images |",
                "|---|---|---|---|---|",
                f"| {o.shown} | {o.on_moving} ({_fmt(o.precision, 2)}) | {o.moving} | {o.found} ({_fmt(o.recall, 2)}) "
                f"| {o.images} |",
            ]
        return "\n".join(lines) + "\n"

    def save(self, path_json: str | Path, markdown: bool = True) -> Path:
        """Write the JSON to ``path_json`` (and, with ``markdown``, the Markdown beside it with
        suffix ``.md``); creates parent directories; returns the JSON path."""
        path = Path(path_json)
        if markdown and path.suffix == ".md":
            raise ValueError(f"{path}: the JSON path must not end in .md (the Markdown goes there)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json_dict(), indent=2, allow_nan=False) + "\n")
        if markdown:
            path.with_suffix(".md").write_text(self.to_markdown())
        return path
