"""One run of the decomposition ladder (docs/decomposition-ladder.md).

Trains one model on generated street scenes (``ROOT/train``) with the given overrides, evaluates
it on ``ROOT/heldout`` and writes ``OUT/summary.json`` (motion scores by kind of mover, depth per
region, wall time) and ``OUT/masks.png`` (image | decomposition | motion distance | GT labels).

    python scripts/decomposition_ladder.py --data /tmp/ladder/data --out /tmp/ladder/runs/base \\
        --steps 300 --set model.depth_source=ground_truth model.ground_truth_depth_scale=0.01
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with train/ and heldout/ sequence folders")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--components", type=int, default=5)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides section.key=value")
    parser.add_argument("--eval-only", action="store_true", help="evaluate OUT/checkpoints/last.pt again")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from mds_core.config import DataConfig, ModelConfig, apply_overrides, config_to_dict
    from mds_core.data.factory import build_dataset
    from mds_core.evaluation.evaluate import EvaluationRequest, run_evaluation
    from mds_core.evaluation.report import json_safe, motion_summary
    from mds_core.inference.predictor import Predictor
    from mds_core.tools.accuracy import AccuracyPreset, montage_frames
    from mds_core.training.loop import train

    data, out = Path(args.data), Path(args.out)
    preset = AccuracyPreset(name="ladder", width=192, height=64, train_sequences=6, frames_per_sequence=40,
                            heldout_sequences=2, heldout_frames=20, steps=args.steps, batch_size=args.batch_size,
                            seed=args.seed, device="cpu")
    from mds_core.tools.accuracy import Variant, training_config

    samples = len(build_dataset(DataConfig(root=str(data / "train")), ModelConfig(height=64, width=192), training=True))
    config = training_config(preset, Variant(f"K={args.components}", args.components), data / "train", out, samples,
                             args.seed)
    config.logging.progress = False
    config.logging.tensorboard = False
    config.logging.image_every = args.steps  # one panel at the end
    config = apply_overrides(config, args.set)
    started = time.perf_counter()
    if args.eval_only:
        previous = json.loads((out / "summary.json").read_text())
        checkpoint, train_seconds = out / "checkpoints" / "last.pt", previous["train_seconds"]
        steps, losses = previous["steps"], [previous["loss_first_10"]] * 10 + [previous["loss_last_10"]] * 10
    else:
        result = train(config, overwrite=True)
        checkpoint, train_seconds, steps, losses = result.checkpoint, time.perf_counter() - started, result.steps, result.losses
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    report = run_evaluation(EvaluationRequest(checkpoint=str(checkpoint), data=str(data / "heldout"),
                                              device="cpu"), progress=False, predictor=predictor)
    report.save(out / "evaluation.json")
    depth = report.depth
    assert depth is not None, "the generated held-out scenes have ground-truth depth"
    summary = {
        "overrides": args.set, "steps": steps, "seed": args.seed, "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / max(1, steps),
        "loss_first_10": float(np.mean(losses[:10])), "loss_last_10": float(np.mean(losses[-10:])),
        "motion": {k: motion_summary(v) for k, v in report.motion_scores.items()},
        "abs_rel": {k: getattr(depth.regions.get(k), "abs_rel", None) for k in ("moving", "static_background")},
        "config": config_to_dict(config),
    }
    (out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2))
    _montage(predictor, montage_frames(data / "heldout", 4), out / "masks.png")
    for key, value in summary["motion"].items():
        logging.info("%-22s AP %.3f (prevalence %.3f)  best F1 %.3f (all-moving %.3f)", key,
                     value["average_precision"], value["prevalence"], value["best_f1"], value["all_moving_f1"])
    logging.info("train %.0f s (%.2f s/step)", train_seconds, summary["seconds_per_step"])


def _montage(predictor, frames, path: Path) -> None:
    import cv2

    from mds_core.data.sequence_folder import SequenceFolder
    from mds_core.evaluation.motion_scores import distance_to_probability
    from mds_core.visualization import colourise_masks, colourise_motion_labels, overlay, panel, save_png

    tiles = []
    for seq_path, index in frames:
        sequence = SequenceFolder(seq_path)
        intrinsics, _ = sequence.intrinsics()
        image, previous = sequence.image(index), sequence.image(index - 1)
        prediction = predictor.predict(image, intrinsics, previous, ground_truth_depth=sequence.depth(index))
        small = cv2.resize(image, predictor.size, interpolation=cv2.INTER_AREA)
        distance = (255 * distance_to_probability(prediction.motion_distance)).astype(np.uint8)
        labels = cv2.resize(sequence.motion(index), predictor.size, interpolation=cv2.INTER_NEAREST)
        tiles += [small, overlay(small, colourise_masks(prediction.masks), 0.6),
                  np.repeat(distance[..., None], 3, axis=2), colourise_motion_labels(labels)]
    names = ["image", "decomposition", "motion distance", "GT motion"]
    save_png(path, panel(tiles, columns=4, labels=names * (len(tiles) // 4)))


if __name__ == "__main__":
    main()
