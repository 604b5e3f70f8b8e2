"""How much of a model's depth error on objects is each object's own scale (docs/accuracy.md, the depth claim's ladder).

A rigid object that moves on its own is seen the same by two frames at any depth, if its translation is
scaled with it: the photometric loss pins the static world's scale through the ego-motion, not a mover's.
This splits the held-out depth error on each labelled object (moving, parked) into its **scale**: the
object's median ratio of predicted (image median-scaled) to true depth, and its **shape**: abs_rel left
after dividing the object by that ratio. Objects of at least ``--min-pixels`` valid pixels; one JSON line
per checkpoint, appended to ``--out``.

    python scripts/object_scale_probe.py --data outputs/accuracy_city2/data/heldout \\
        --out outputs/object_scale.jsonl outputs/accuracy_city2/seed0/*/checkpoints/last.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mds_core.evaluation.evaluate import EvaluationRequest, evaluation_frames
from mds_core.evaluation.metrics import REGION_LABELS, EvalSettings
from mds_core.inference.predictor import Predictor, resize_disparity_to_depth

RANGE = EvalSettings()  # the valid ground truth and the clamp of mds eval


def valid_depth(gt: np.ndarray) -> np.ndarray:
    return (gt > RANGE.min_depth) & (gt < RANGE.max_depth)


def object_errors(pred: np.ndarray, gt: np.ndarray, instances: np.ndarray, motion: np.ndarray,
                  min_pixels: int) -> list[dict[str, float | str]]:
    """Per labelled object of one image (``pred`` already median-scaled): region, scale ratio, abs_rel, shape abs_rel."""
    valid = valid_depth(gt)
    regions = {REGION_LABELS["moving"]: "moving", REGION_LABELS["static_movable"]: "parked"}
    objects = []
    for instance in np.unique(instances[valid & (instances > 0)]):
        pixels = valid & (instances == instance)
        labels, counts = np.unique(motion[pixels], return_counts=True)
        region = regions.get(int(labels[np.argmax(counts)]))
        if region is None or pixels.sum() < min_pixels:
            continue
        ratio = float(np.median(pred[pixels] / gt[pixels]))
        objects.append({"region": region, "ratio": ratio,
                        "abs_rel": float(np.mean(np.abs(pred[pixels] - gt[pixels]) / gt[pixels])),
                        "shape_abs_rel": float(np.mean(np.abs(pred[pixels] / ratio - gt[pixels]) / gt[pixels]))})
    return objects


def probe(checkpoint: Path, data: Path, min_pixels: int) -> dict[str, object]:
    predictor = Predictor.from_checkpoint(str(checkpoint), device="cpu", motion_evidence=False)
    cfg = predictor.config
    objects: list[dict[str, float | str]] = []
    for sequence, index in evaluation_frames(EvaluationRequest(checkpoint=str(checkpoint), data=str(data))):
        gt, motion = sequence.depth(index), sequence.motion(index)
        situation = sequence.situation(index)
        if gt is None or motion is None or situation is None:
            continue
        intrinsics, _ = sequence.intrinsics()
        previous = sequence.image(index - 1) if index > 0 else None
        oracle = None if predictor.model.uses_depth_network else gt
        prediction = predictor.predict(sequence.image(index), intrinsics, previous, ground_truth_depth=oracle)
        pred = resize_disparity_to_depth(prediction.disparity, gt.shape[::-1], cfg.min_depth, cfg.max_depth)
        valid = valid_depth(gt)
        pred = np.clip(pred * np.median(gt[valid]) / np.median(pred[valid]), RANGE.min_depth, RANGE.max_depth)
        objects += object_errors(pred, gt, situation.instances, motion, min_pixels)
    summary: dict[str, object] = {"checkpoint": str(checkpoint)}
    for region in ("moving", "parked"):
        rows = [o for o in objects if o["region"] == region]
        ratios = np.array([o["ratio"] for o in rows])
        summary[region] = {
            "objects": len(rows),
            "abs_rel": round(float(np.mean([o["abs_rel"] for o in rows])), 3),
            "shape_abs_rel": round(float(np.mean([o["shape_abs_rel"] for o in rows])), 3),
            "median_abs_log_ratio": round(float(np.median(np.abs(np.log(ratios)))), 3),
            "too_far": round(float(np.mean(ratios > 1.0)), 3),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", required=True, type=Path, help="held-out sequence folders with instances/")
    parser.add_argument("--out", type=Path, default=Path("outputs/object_scale.jsonl"))
    parser.add_argument("--min-pixels", type=int, default=20)
    args = parser.parse_args()
    for checkpoint in args.checkpoints:
        summary = probe(checkpoint, args.data, args.min_pixels)
        print(json.dumps(summary))
        with args.out.open("a") as out:
            out.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
