"""``mds demo``: the whole pipeline on generated data, on the CPU, in a few minutes.

1. generates synthetic street scenes with ground truth (:mod:`mds_core.tools.synth`);
2. trains a small MonoDepthSeg (ResNet18, K=5) on the training sequences;
3. evaluates it on a held-out sequence (depth metrics per motion region, motion segmentation);
4. writes ``demo.png`` (image | GT depth | predicted depth | decomposition | GT motion labels)
   and ``summary.md`` into the output directory.

It is a smoke-sized run, not a benchmark: the numbers show the pipeline works, not how good
the method is (see README, "Accuracy").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mds_core.config import ModelConfig, TrainConfig
from mds_core.data.sequence_folder import SequenceFolder
from mds_core.evaluation.evaluate import EvaluationRequest, run_evaluation
from mds_core.inference.predictor import Predictor
from mds_core.tools.synth import write_train_heldout
from mds_core.training.loop import train
from mds_core.visualization import (
    colourise_depth,
    colourise_masks,
    colourise_motion_labels,
    overlay,
    panel,
    save_png,
)


@dataclass
class DemoSettings:
    output: Path = Path("outputs/demo")
    steps: int = 300
    seed: int = 0
    width: int = 192
    height: int = 64
    train_sequences: int = 3
    frames: int = 30
    components: int = 5
    scene: str = "road"  # the kind of generated scene (mds_core.tools.synth.SCENES)


def run_demo(settings: DemoSettings) -> str:
    out = settings.output
    started = time.perf_counter()
    split = write_train_heldout(out / "data", width=settings.width, height=settings.height,
                                train_sequences=settings.train_sequences, train_frames=settings.frames,
                                heldout_sequences=1, heldout_frames=settings.frames // 2, seed=settings.seed,
                                scene=settings.scene)
    data, heldout = split.train, split.heldout

    config = TrainConfig()
    config.model = ModelConfig(height=settings.height, width=settings.width, depth_encoder="resnet18",
                               pose_mask_encoder="resnet18", num_components=settings.components)
    config.data.root = str(data)
    config.output_dir = str(out / "run")
    config.seed = settings.seed
    config.optim.batch_size = 4
    config.optim.max_steps = settings.steps
    config.logging.image_every = max(1, settings.steps // 4)
    config.logging.checkpoint_every = settings.steps
    result = train(config, overwrite=True)  # the demo owns its folder: a rerun replaces its model
    trained = time.perf_counter() - started

    predictor = Predictor.from_checkpoint(result.checkpoint, device="auto")
    report = run_evaluation(EvaluationRequest(checkpoint=str(result.checkpoint), data=str(heldout)),
                            progress=False, predictor=predictor)
    report.save(out / "evaluation.json")
    picture = _montage(predictor, heldout / "heldout_00")
    save_png(out / "demo.png", picture)

    first = sum(result.losses[:10]) / max(1, len(result.losses[:10]))
    last = sum(result.losses[-10:]) / max(1, len(result.losses[-10:]))
    summary = "\n".join([
        "# mds demo",
        "",
        f"Trained {result.steps} steps ({settings.train_sequences} generated sequences of {settings.frames} frames, "
        f"{settings.width}x{settings.height}, ResNet18, K={settings.components}, {settings.scene} scenes) in {trained:.0f} s "
        f"on {predictor.device}.",
        f"Training loss: {first:.4f} (first 10 steps) -> {last:.4f} (last 10 steps).",
        "",
        "Held-out sequence:",
        "",
        report.to_markdown(),
        "",
        f"Pictures: {out / 'demo.png'} (image | GT depth | depth | decomposition | GT motion labels), "
        f"training panels in {out / 'run' / 'panels'}; TensorBoard: tensorboard --logdir {out / 'run' / 'tensorboard'}",
        f"Checkpoint: {result.checkpoint}",
    ])
    (out / "summary.md").write_text(summary + "\n")
    return summary


def _montage(predictor: Predictor, sequence_dir: Path, frames: tuple[int, ...] = (3, 7, 11)) -> np.ndarray:
    sequence = SequenceFolder(sequence_dir)
    intrinsics, _ = sequence.intrinsics()
    rows = []
    for index in [f for f in frames if 0 < f < len(sequence)]:
        image = sequence.image(index)
        prediction = predictor.predict(image, intrinsics, sequence.image(index - 1))
        size = predictor.size
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        gt_depth = cv2.resize(sequence.depth(index), size, interpolation=cv2.INTER_NEAREST)
        labels = cv2.resize(sequence.motion(index), size, interpolation=cv2.INTER_NEAREST)
        rows += [small, colourise_depth(gt_depth), colourise_depth(prediction.depth),
                 overlay(small, colourise_masks(prediction.masks), 0.6), colourise_motion_labels(labels)]
    names = ["image", "GT depth", "depth", "decomposition", "GT motion"]
    return panel(rows, columns=5, labels=names * (len(rows) // 5))
