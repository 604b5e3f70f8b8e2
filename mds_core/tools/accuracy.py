"""``mds accuracy``: the K=1 vs K=5 accuracy benchmark on generated street scenes.

1. generates training and held-out sequences once (different seeds, :mod:`mds_core.tools.synth.splits`);
2. trains K=1 (the Monodepth2-style baseline) and K=5 on exactly the same data, seed, step
   budget and schedule; the two training configs differ only in ``model.num_components``;
3. evaluates both on the held-out sequences (depth overall and per motion region, motion
   segmentation of the decomposition);
4. writes ``accuracy.md``, ``accuracy.json`` and ``accuracy.png`` (image | GT depth | K=1 depth |
   K=5 depth | K=5 decomposition | GT motion labels) into the output directory.

Two presets: ``cpu`` (about 20-30 minutes on 2 CPU cores) and ``gpu`` (640x192, the paper's
resolution and batch size, thousands of steps, for a CUDA GPU).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mds_core.config import DataConfig, EncoderName, ModelConfig, TrainConfig

if TYPE_CHECKING:  # the heavy imports (torch, the networks) happen when the benchmark runs, not for `mds --help`
    import numpy as np
    import torch

    from mds_core.evaluation.metrics import DepthMetrics
    from mds_core.evaluation.report import EvaluationReport
    from mds_core.inference.predictor import Predictor
    from mds_core.tools.synth import TrainHeldoutSplit

LOG = logging.getLogger(__name__)

#: The compared numbers of components: the baseline and the paper's setting.
COMPONENTS: tuple[int, ...] = (1, 5)
#: Markdown label -> region key in the evaluation (``overall`` is the per-image mean).
REGIONS: tuple[tuple[str, str], ...] = (
    ("overall", "overall"),
    ("moving", "moving"),
    ("static movable", "static_movable"),
    ("static background", "static_background"),
)
METRICS: tuple[str, ...] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1")
MONTAGE_COLUMNS: tuple[str, ...] = ("image", "GT depth", "K=1 depth", "K=5 depth", "K=5 decomposition", "GT motion")


@dataclass(frozen=True)
class AccuracyPreset:
    """Data, training budget and device of one benchmark run (both models get the same)."""

    name: str
    width: int
    height: int
    train_sequences: int
    frames_per_sequence: int
    heldout_sequences: int
    heldout_frames: int
    steps: int
    batch_size: int
    encoder: EncoderName = "resnet18"
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0  # data-loader processes (worth it on a GPU, not on 2 CPU cores)
    montage_frames: int = 4

    def validate(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.width % 32 or self.height % 32:
            raise ValueError(f"width and height must be positive multiples of 32, got {self.width}x{self.height}")
        if self.train_sequences < 1 or self.heldout_sequences < 1:
            raise ValueError("need at least one training and one held-out sequence")
        if self.frames_per_sequence < 3:
            raise ValueError(f"training sequences need at least 3 frames, got {self.frames_per_sequence}")
        if self.heldout_frames < 2:
            raise ValueError(f"held-out sequences need at least 2 frames, got {self.heldout_frames}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch size must be >= 1")


PRESETS: dict[str, AccuracyPreset] = {
    # Sized on this project's 2-core CPU machine: about 0.8-0.95 s per step at 192x64, batch 4,
    # ResNet18 (mds benchmark; K=5 took 0.83 s/step in the real run), so the whole run takes
    # about 18 minutes on idle cores; 29 minutes were measured with another job sharing them.
    "cpu": AccuracyPreset(name="cpu", width=192, height=64, train_sequences=6, frames_per_sequence=40,
                          heldout_sequences=2, heldout_frames=20, steps=600, batch_size=4, device="cpu"),
    # The paper's resolution and batch size; about 25 epochs of 20 x 98 samples.
    "gpu": AccuracyPreset(name="gpu", width=640, height=192, train_sequences=20, frames_per_sequence=100,
                          heldout_sequences=4, heldout_frames=50, steps=4000, batch_size=12, device="auto",
                          num_workers=4),
}


@dataclass
class ModelResult:
    """One trained model and its evaluation on the held-out sequences."""

    num_components: int
    report: EvaluationReport
    train_seconds: float
    steps: int
    epochs: int
    loss_first: float  # mean training loss of the first 10 steps
    loss_last: float  # mean training loss of the last 10 steps
    checkpoint: Path

    @property
    def label(self) -> str:
        return f"K={self.num_components}"

    def region(self, key: str) -> DepthMetrics | None:
        depth = self.report.depth
        return depth.overall if key == "overall" else depth.regions.get(key)

    def to_json_dict(self) -> dict[str, Any]:
        from mds_core.evaluation.report import json_safe

        motion = self.report.motion
        return {
            "num_components": self.num_components,
            "train_seconds": self.train_seconds,
            "steps": self.steps,
            "epochs": self.epochs,
            "loss_first_10": self.loss_first,
            "loss_last_10": self.loss_last,
            "checkpoint": str(self.checkpoint),
            "depth": {key: json_safe(self.region(key)) for _, key in REGIONS},
            "region_pixels": dict(self.report.depth.region_pixels),
            # K=1: the single mask is 1 everywhere, so there is no decomposition to score
            "motion_segmentation": None if motion is None or self.num_components == 1 else {
                "best_f1": motion.best_f1, "best_threshold": motion.best_threshold,
                "average_precision": motion.average_precision, "iou_at_05": motion.iou_at_05,
                "num_positive": motion.num_positive, "num_negative": motion.num_negative,
            },
            "report": self.report.to_json_dict(include_curve=False),
        }


@dataclass
class AccuracyResult:
    """Everything ``accuracy.md`` / ``accuracy.json`` say, plus where the files are."""

    preset: AccuracyPreset
    device: str
    machine: str
    models: list[ModelResult]
    wall_seconds: float
    data: TrainHeldoutSplit
    num_train_samples: int
    montage: list[tuple[str, int]]  # (held-out sequence, frame) shown in the PNG
    markdown_path: Path
    json_path: Path
    png_path: Path
    notes: list[str] = field(default_factory=list)

    def model(self, num_components: int) -> ModelResult:
        return next(m for m in self.models if m.num_components == num_components)

    def to_json_dict(self) -> dict[str, Any]:
        from mds_core.evaluation.report import json_safe

        return json_safe({
            "preset": dataclasses.asdict(self.preset),
            "device": self.device,
            "machine": self.machine,
            "wall_seconds": self.wall_seconds,
            "num_train_samples": self.num_train_samples,
            "num_heldout_frames": self.models[0].report.depth.num_images,
            "montage_frames": [{"sequence": s, "frame": f} for s, f in self.montage],
            "models": {m.label: m.to_json_dict() for m in self.models},
            "notes": self.notes,
        })

    def to_markdown(self) -> str:
        p = self.preset
        first = self.models[0]
        depth = first.report.depth
        lines = [
            "# K=1 vs K=5 on synthetic street scenes",
            "",
            f"- **preset**: `{p.name}`: {p.width}x{p.height}, {p.encoder} encoders, {p.steps} steps of batch "
            f"{p.batch_size} per model ({_schedule(first.epochs)}), seed {p.seed}",
            f"- **training data**: {p.train_sequences} generated sequence(s) x {p.frames_per_sequence} frames "
            f"({self.num_train_samples} samples)",
            f"- **held-out data**: {p.heldout_sequences} sequence(s) x {p.heldout_frames} frames (other seeds); "
            f"{depth.num_images} frames scored for depth, {depth.num_labelled_images} with motion labels",
            f"- **machine**: {self.machine}; device `{self.device}`",
            f"- **wall time**: {self.wall_seconds / 60:.1f} min in all (data, both trainings, evaluation, pictures)",
            "",
            "Depth (per-image median scaling, valid 1e-3 < gt < 80 m). Overall: mean over images; "
            "regions: pixels pooled over images. Lower is better except a1.",
            "",
            "| model | region | " + " | ".join(METRICS) + " | pixels |",
            "|---|---|" + "---|" * len(METRICS) + "---|",
        ]
        for model in self.models:
            for label, key in REGIONS:
                metrics = model.region(key)
                values = [_fmt(getattr(metrics, n) if metrics is not None else None) for n in METRICS]
                pixels = model.report.depth.num_valid_pixels if key == "overall" else model.report.depth.region_pixels.get(key, 0)
                lines.append(f"| {model.label} | {label} | " + " | ".join(values) + f" | {pixels} |")
        lines += ["", "Motion segmentation (moving probability = 1 - mask of the largest component):", "",
                  "| model | best F1 | AP | IoU@0.5 | moving px | static px |", "|---|---|---|---|---|---|"]
        for model in self.models:
            m = model.report.motion
            if model.num_components == 1 or m is None:
                lines.append(f"| {model.label} | n/a | n/a | n/a | - | - |")
            else:
                lines.append(f"| {model.label} | {_fmt(m.best_f1)} | {_fmt(m.average_precision)} | "
                             f"{_fmt(m.iou_at_05)} | {m.num_positive} | {m.num_negative} |")
        m5 = next((m.report.motion for m in self.models if m.num_components > 1 and m.report.motion), None)
        if m5 is not None and m5.has_positives:
            rate = m5.num_positive / max(1, m5.num_positive + m5.num_negative)
            lines += ["", f"K=1 has a single component, so it has no decomposition to score. For scale: calling "
                          f"every pixel moving gives F1 {_fmt(2 * rate / (1 + rate))} and AP {_fmt(rate)} "
                          f"(moving fraction)."]
        lines += ["", "| model | training time | loss (first 10 steps -> last 10) |", "|---|---|---|"]
        for model in self.models:
            lines.append(f"| {model.label} | {model.train_seconds / 60:.1f} min ({model.steps} steps, "
                         f"{model.train_seconds / max(1, model.steps):.2f} s/step) | "
                         f"{model.loss_first:.4f} -> {model.loss_last:.4f} |")
        shown = ", ".join(f"{s} #{f}" for s, f in self.montage)
        lines += ["", f"Pictures: `{self.png_path.name}` ({' | '.join(MONTAGE_COLUMNS)}); held-out frames {shown} "
                      "(the frames with the most moving pixels in the ground truth, at least 5 frames apart)."]
        if self.notes:
            lines += [""] + [f"Note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _schedule(epochs: int) -> str:
    decay = epochs // 4  # as in training_config
    if decay == 0:
        return f"{epochs} epoch(s), constant lr 1e-4"
    return f"{epochs} epochs, lr 1e-4, x0.1 for the last {decay}"


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def describe_machine(device: torch.device) -> str:
    """One line: the accelerator, or the CPU model and core count."""
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), {os.cpu_count()} CPU cores"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, no GPU used"


def training_config(preset: AccuracyPreset, num_components: int, data_root: Path, output_dir: Path,
                    num_samples: int) -> TrainConfig:
    """The training config of one model; the K=1 and K=5 configs differ only in ``num_components``
    (and their ``output_dir``).

    Epochs are chosen so that ``preset.steps`` steps fit, with the paper's schedule shape: lr x0.1
    for the last quarter of the epochs (none for runs shorter than 4 epochs).
    """
    from mds_core.training.sampler import EpochBatches

    batches_per_epoch = EpochBatches(num_samples, preset.batch_size, preset.seed).batches_per_epoch
    epochs = max(1, math.ceil(preset.steps / batches_per_epoch))
    config = TrainConfig()
    config.model = ModelConfig(height=preset.height, width=preset.width, depth_encoder=preset.encoder,
                               pose_mask_encoder=preset.encoder, num_components=num_components)
    config.data.root = str(data_root)
    config.data.num_workers = preset.num_workers
    config.output_dir = str(output_dir)
    config.seed = preset.seed
    config.device = preset.device
    config.optim.batch_size = preset.batch_size
    config.optim.epochs = epochs
    config.optim.lr_decay_epochs = epochs // 4
    config.optim.max_steps = preset.steps
    config.logging.scalar_every = max(1, min(50, preset.steps // 20))
    config.logging.image_every = max(1, preset.steps // 4)
    config.logging.checkpoint_every = preset.steps + 1  # only checkpoints/last.pt (hundreds of MB each)
    config.logging.keep_checkpoints = 1
    return config


def montage_frames(heldout: Path, count: int, min_gap: int = 5) -> list[tuple[Path, int]]:
    """The held-out frames (not the first of a sequence) with the most moving pixels in the
    ground truth, at least ``min_gap`` frames apart within a sequence; in sequence order."""
    from mds_core.data.sequence_folder import find_sequences
    from mds_core.tools.synth import MOTION_MOVING

    candidates = []
    for sequence in find_sequences(heldout):
        for index in range(1, len(sequence)):
            labels = sequence.motion(index)
            moving = int((labels == MOTION_MOVING).sum()) if labels is not None else 0
            candidates.append((moving, sequence.path, index))
    chosen: list[tuple[Path, int]] = []
    for _, path, index in sorted(candidates, key=lambda c: (-c[0], str(c[1]), c[2])):
        if all(p != path or abs(i - index) >= min_gap for p, i in chosen):
            chosen.append((path, index))
        if len(chosen) == count:
            break
    return sorted(chosen, key=lambda c: (str(c[0]), c[1]))


def comparison_montage(baseline: Predictor, decomposer: Predictor, frames: list[tuple[Path, int]]) -> np.ndarray:
    """One row per frame: image | GT depth | K=1 depth | K=5 depth | K=5 decomposition | GT motion."""
    import cv2

    from mds_core.data.sequence_folder import SequenceFolder
    from mds_core.visualization import colourise_depth, colourise_masks, colourise_motion_labels, overlay, panel

    tiles = []
    size = decomposer.size
    for path, index in frames:
        sequence = SequenceFolder(path)
        intrinsics, _ = sequence.intrinsics()
        image, previous = sequence.image(index), sequence.image(index - 1)
        depth_1 = baseline.predict(image, intrinsics).depth
        prediction = decomposer.predict(image, intrinsics, previous)
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        gt_depth = cv2.resize(sequence.depth(index), size, interpolation=cv2.INTER_NEAREST)
        labels = cv2.resize(sequence.motion(index), size, interpolation=cv2.INTER_NEAREST)
        tiles += [small, colourise_depth(gt_depth), colourise_depth(depth_1), colourise_depth(prediction.depth),
                  overlay(small, colourise_masks(prediction.masks), 0.6), colourise_motion_labels(labels)]
    columns = len(MONTAGE_COLUMNS)
    return panel(tiles, columns=columns, labels=list(MONTAGE_COLUMNS) * (len(tiles) // columns))


def _generate(preset: AccuracyPreset, root: Path) -> TrainHeldoutSplit:
    from mds_core.progress import progress
    from mds_core.tools.synth import write_train_heldout

    total = preset.train_sequences * preset.frames_per_sequence + preset.heldout_sequences * preset.heldout_frames
    with progress(total=total, unit="frame", desc="synth") as bar:
        return write_train_heldout(root, width=preset.width, height=preset.height,
                                   train_sequences=preset.train_sequences, train_frames=preset.frames_per_sequence,
                                   heldout_sequences=preset.heldout_sequences, heldout_frames=preset.heldout_frames,
                                   seed=preset.seed, on_frame=lambda _: bar.update(1))


def run_accuracy_benchmark(preset: AccuracyPreset, output_dir: str | Path) -> AccuracyResult:
    """Generate data once, train K=1 and K=5 on it, evaluate both on held-out scenes, write reports."""
    import numpy as np

    from mds_core.data.factory import build_dataset
    from mds_core.device import resolve_device
    from mds_core.evaluation.evaluate import EvaluationRequest, run_evaluation
    from mds_core.inference.predictor import Predictor
    from mds_core.training.loop import train
    from mds_core.visualization import save_png

    preset.validate()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    device = resolve_device(preset.device)
    LOG.info("accuracy benchmark, preset %s: generating data in %s", preset.name, out / "data")
    split = _generate(preset, out / "data")
    num_samples = len(build_dataset(DataConfig(root=str(split.train)), ModelConfig(height=preset.height, width=preset.width),
                                    seed=preset.seed, training=True))

    models: list[ModelResult] = []
    predictors: dict[int, Predictor] = {}
    for k in COMPONENTS:
        config = training_config(preset, k, split.train, out / f"k{k}", num_samples)
        LOG.info("training K=%d: %d steps (%d epochs) on %d samples", k, preset.steps, config.optim.epochs, num_samples)
        t0 = time.perf_counter()
        result = train(config, overwrite=True)  # the benchmark owns its folders: a rerun replaces them
        seconds = time.perf_counter() - t0
        predictor = Predictor.from_checkpoint(result.checkpoint, device=str(device))
        LOG.info("evaluating K=%d on %s", k, split.heldout)
        report = run_evaluation(EvaluationRequest(checkpoint=str(result.checkpoint), data=str(split.heldout),
                                                  device=str(device)), predictor=predictor)
        report.save(out / f"k{k}" / "evaluation.json")
        losses = result.losses or [float("nan")]
        models.append(ModelResult(k, report, seconds, result.steps, config.optim.epochs,
                                  float(np.mean(losses[:10])), float(np.mean(losses[-10:])), result.checkpoint))
        predictors[k] = predictor

    frames = montage_frames(split.heldout, preset.montage_frames)
    png_path = out / "accuracy.png"
    save_png(png_path, comparison_montage(predictors[COMPONENTS[0]], predictors[COMPONENTS[-1]], frames))

    notes = []
    if device.type == "cpu":
        notes.append("CPU run: fp32, no AMP.")
    accuracy = AccuracyResult(
        preset=preset, device=str(device), machine=describe_machine(device), models=models,
        wall_seconds=time.perf_counter() - started, data=split, num_train_samples=num_samples,
        montage=[(p.name, i) for p, i in frames], markdown_path=out / "accuracy.md",
        json_path=out / "accuracy.json", png_path=png_path, notes=notes,
    )
    accuracy.json_path.write_text(json.dumps(accuracy.to_json_dict(), indent=2, allow_nan=False) + "\n")
    accuracy.markdown_path.write_text(accuracy.to_markdown())
    return accuracy
