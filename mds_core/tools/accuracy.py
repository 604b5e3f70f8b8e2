"""``mds accuracy``: K=1 vs K=5 (and the oracle rung) on generated street scenes, over seeds.

1. generates training and held-out sequences once (different seeds, :mod:`mds_core.tools.synth.splits`);
2. for each training seed, trains every *variant* on exactly the same data, step budget and
   schedule: K=1 (the Monodepth2-style baseline), K=5 (the method), and the oracle rung
   "K=5, GT depth" (ground-truth depth in place of the depth network, so only the decomposition
   learns; docs/decomposition-ladder.md). K=1 and K=5 differ only in ``model.num_components``;
3. evaluates each on the held-out sequences: depth overall and per motion region, motion
   segmentation of the decomposition for all movers and for the movers the loss can see
   (those that move relative to the camera);
4. writes ``accuracy.md`` (mean and standard deviation over seeds, and K=5's change of abs_rel
   against K=1 region by region), ``accuracy.json`` (every run) and ``accuracy.png`` (first seed:
   image | GT depth | K=1 depth | K=5 depth | K=5 decomposition | GT motion labels) into the
   output directory.

Each trained model's folder gets a ``training.json`` (time, steps, losses). With ``reuse``, a
model whose folder holds one, next to a checkpoint trained with exactly the config this run
would train, is evaluated again instead of retrained (a finished one can be re-scored with a newer
evaluation), and an unfinished one (a run stopped mid-training) resumes exactly from its last
checkpoint.

Presets: ``quick`` (one seed, about 15 minutes on 2 CPU cores), ``cpu`` (three seeds, under an
hour), ``long`` (20 city drives, 6,000 steps: hours, resumable across stops with ``reuse``) and
``gpu`` (640x192, the paper's resolution and batch size, for a CUDA GPU).
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

    from mds_core.evaluation.metrics import DepthEvaluation, DepthMetrics
    from mds_core.evaluation.motion_segmentation import MotionSegmentationResult
    from mds_core.evaluation.report import EvaluationReport
    from mds_core.inference.predictor import Predictor
    from mds_core.tools.synth import TrainHeldoutSplit

LOG = logging.getLogger(__name__)

#: Markdown label -> region key in the evaluation (``overall`` is the per-image mean).
REGIONS: tuple[tuple[str, str], ...] = (
    ("overall", "overall"),
    ("moving", "moving"),
    ("moving relative to camera", "moving_relative"),
    ("moving with camera", "moving_with_camera"),
    ("static movable", "static_movable"),
    ("static background", "static_background"),
)
#: Depth numbers of the summary table (per region).
SUMMARY_METRICS: tuple[str, ...] = ("abs_rel", "a1")
#: Motion scores of the summary table: key of ``EvaluationReport.motion_scores`` -> label.
MOTION_SCORES: tuple[tuple[str, str], ...] = (("mask/all", "all movers"), ("mask/relative", "relative movers"))
MONTAGE_COLUMNS: tuple[str, ...] = ("image", "GT depth", "K=1 depth", "K=5 depth", "K=5 decomposition", "GT motion")
ORACLE_COLUMN = "K=5 decomposition, GT depth"
SCENE_FLOW_COLUMNS: tuple[str, ...] = ("scene-flow depth", "scene-flow motion mask")


@dataclass(frozen=True)
class Variant:
    """One compared model: a motion model, a number of components and the config overrides that make it."""

    name: str
    num_components: int
    overrides: tuple[str, ...] = ()
    # "full": the method as published; "depth": ground-truth depth (oracle rung); "motion": the scene's true
    # motions in the warp, only depth learns (mds_core.method.true_motion); "movers": the component assignment
    # told the truly moving pixels (model.moving_pixels_source), everything learned
    rung: str = "full"
    motion_model: str = "components"  # or "scene_flow" (Dynamo-Depth)
    folder_name: str | None = None  # the output folder, when the rung and K do not name it

    @property
    def segments(self) -> bool:
        """Whether the model says what moves (K > 1 components, or the scene flow's motion mask)."""
        return self.motion_model == "scene_flow" or self.num_components > 1

    @property
    def folder(self) -> str:
        """``k1``, ``k5``, ``k5_gt_depth``, ``scene_flow``, ...: the variant's output folder below its seed's."""
        if self.folder_name is not None:
            return self.folder_name
        if self.motion_model == "scene_flow":
            return "scene_flow"
        name = f"k{self.num_components}"
        return name if self.rung == "full" else f"{name}_gt_{self.rung}"


#: The compared variants, by rung. The GT-depth scale: docs/decomposition-ladder.md, finding 1.
VARIANTS: tuple[Variant, ...] = (
    Variant("K=1", 1),
    Variant("K=5", 5),
    Variant("K=5, GT depth", 5, ("model.depth_source=ground_truth", "model.ground_truth_depth_scale=0.01"), "depth"),
    Variant("scene flow", 1, rung="full", motion_model="scene_flow"),
    # the depth claim's ladder: K=1 given the camera's true motion, and given every object's (a perfect decomposition)
    Variant("K=1, true camera motion", 1, ("model.motion_source=true_camera",), "motion", folder_name="true_camera"),
    Variant("true scene motion", 1, ("model.motion_source=true_scene",), "motion", folder_name="true_scene"),
    # and K=5 whose component assignment is told the truly moving pixels (everything else learned)
    Variant("K=5, true movers", 5, ("model.moving_pixels_source=ground_truth",), "movers", folder_name="k5_true_movers"),
)
RUNGS: tuple[str, ...] = ("full", "depth", "motion", "movers")
#: the rungs a preset runs unless told (``--rungs``)
DEFAULT_RUNGS: tuple[str, ...] = ("full", "depth")


@dataclass
class AccuracyPreset:
    """Data, training budget, seeds and device of one benchmark run (every variant gets the same)."""

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
    scene: str = "road"  # the kind of generated scene (mds_core.tools.synth.config.SCENES)
    # ``section.key=value`` settings for every model (e.g. another motion-hypothesis set), after the variant's
    overrides: tuple[str, ...] = ()
    seed: int = 0  # data seed and first training seed; seed + i for the i-th repetition
    seeds: int = 1  # training repetitions (mean and standard deviation over them)
    rungs: tuple[str, ...] = DEFAULT_RUNGS
    scene_flow: bool = True  # also the scene-flow motion model (Dynamo-Depth), in the full rung
    device: str = "auto"
    num_workers: int = 0  # data-loader processes (worth it on a GPU, not on 2 CPU cores)
    montage_frames: int = 4
    # steps between the checkpoints a stopped run resumes from (``reuse``); 0: only the final one
    checkpoint_every: int = 0
    # models trained at once, each in its own process with its share of the CPU threads (docs/accuracy.md: on 2
    # cores two 1-thread trainings side by side progress about as fast as one 2-thread training alone)
    jobs: int = 1

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
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 steps (0: only at the end), got {self.checkpoint_every}")
        from mds_core.tools.synth.config import SCENES

        if self.scene not in SCENES:
            raise ValueError(f"scene must be one of {sorted(SCENES)}, got {self.scene!r}")
        for variant in self.variants:  # a bad override is refused before any data are generated
            training_config(self, variant, Path("data"), Path("run"), num_samples=self.batch_size)
        unknown = [r for r in self.rungs if r not in RUNGS]
        if unknown or "full" not in self.rungs:
            raise ValueError(f"rungs must include 'full' and come from {list(RUNGS)}, got {list(self.rungs)}")

    @property
    def variants(self) -> list[Variant]:
        return [v for v in VARIANTS if v.rung in self.rungs and (self.scene_flow or v.motion_model != "scene_flow")]

    @property
    def training_seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]


_CPU_DATA = dict(width=192, height=64, train_sequences=6, frames_per_sequence=40, heldout_sequences=2,
                 heldout_frames=20, batch_size=4, device="cpu")
PRESETS: dict[str, AccuracyPreset] = {
    # Sized on this project's 2-core CPU machine (docs/accuracy.md): at 192x64, batch 4, ResNet18,
    # a step takes about 0.3 s (K=1, GT-depth rung) to 0.5 s (K=5) on idle cores, so one seed of
    # the three variants takes about 12 minutes with evaluation.
    "quick": AccuracyPreset(name="quick", steps=600, seeds=1, **_CPU_DATA),
    "cpu": AccuracyPreset(name="cpu", steps=600, seeds=3, **_CPU_DATA),
    # A budget meant to let the depth network resolve cars (docs/accuracy.md, "The long preset"): 20 city
    # drives of 100 frames, 6,000 steps, K=1, K=5 and the scene flow, one seed. About 0.5 s a step on 2
    # idle cores: about an hour a model. It checkpoints every 200 steps; run it again with --reuse after a
    # stop and each unfinished model resumes exactly where its last checkpoint left it.
    "long": AccuracyPreset(name="long", width=192, height=64, train_sequences=20, frames_per_sequence=100,
                           heldout_sequences=8, heldout_frames=20, steps=6000, batch_size=4, seeds=1, scene="city",
                           rungs=("full",), device="cpu", checkpoint_every=200),
    # The paper's resolution and batch size; about 25 epochs of 20 x 98 samples.
    "gpu": AccuracyPreset(name="gpu", width=640, height=192, train_sequences=20, frames_per_sequence=100,
                          heldout_sequences=4, heldout_frames=50, steps=4000, batch_size=12, seeds=3,
                          device="auto", num_workers=4),
}


@dataclass(frozen=True)
class ModelResult:
    """One trained variant (one seed) and its evaluation on the held-out sequences."""

    variant: Variant
    seed: int
    report: EvaluationReport
    train_seconds: float
    steps: int
    epochs: int
    loss_first: float  # mean training loss of the first 10 steps
    loss_last: float  # mean training loss of the last 10 steps
    checkpoint: Path
    # components models with K > 1: the same evaluation with the masks alone (no flow evidence: the paper's)
    masks_alone: EvaluationReport | None = None

    @property
    def num_components(self) -> int:
        return self.variant.num_components

    @property
    def label(self) -> str:
        return self.variant.name

    @property
    def depth(self) -> DepthEvaluation:
        """The depth scores: the generated held-out scenes always have ground-truth depth."""
        depth = self.report.depth
        assert depth is not None, "the held-out scenes have ground-truth depth"
        return depth

    def region(self, key: str) -> DepthMetrics | None:
        depth = self.depth
        return depth.overall if key == "overall" else depth.regions.get(key)

    def motion(self, key: str) -> MotionSegmentationResult | None:
        """A motion score of the model; None for K=1 (one component: nothing to segment)."""
        if not self.variant.segments:
            return None
        return self.report.motion_scores.get(key)

    def situation(self, name: str, masks_alone: bool = False) -> MotionSegmentationResult | None:
        """The motion scores of one situation (:mod:`mds_core.evaluation.situations`); None for K=1 or where
        the held-out scenes do not have it; ``masks_alone``: of the masks without the flow evidence (None
        for models that were not scored so)."""
        report = self.masks_alone if masks_alone else self.report
        scores = report.situations.get(name) if report is not None else None
        return scores.motion if scores is not None and self.variant.segments else None

    def to_json_dict(self) -> dict[str, Any]:
        from mds_core.evaluation.report import json_safe, motion_summary

        return {
            "variant": self.variant.name,
            "num_components": self.num_components,
            "overrides": list(self.variant.overrides),
            "seed": self.seed,
            "train_seconds": self.train_seconds,
            "steps": self.steps,
            "epochs": self.epochs,
            "loss_first_10": self.loss_first,
            "loss_last_10": self.loss_last,
            "checkpoint": str(self.checkpoint),
            "depth": {key: json_safe(self.region(key)) for _, key in REGIONS},
            "region_pixels": dict(self.depth.region_pixels),
            "motion_segmentation": None if not self.variant.segments else {
                key: motion_summary(value) for key, value in self.report.motion_scores.items()},
        }


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of the finite ``values``; NaN if none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    mean = sum(finite) / len(finite)
    if len(finite) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


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
    reused: list[tuple[str, int]] = field(default_factory=list)  # (variant, seed) taken from an earlier run

    def runs(self, variant: Variant) -> list[ModelResult]:
        return [m for m in self.models if m.variant == variant]

    def depth_statistic(self, variant: Variant, region: str, metric: str) -> tuple[float, float]:
        return mean_and_std([getattr(m.region(region), metric, None) for m in self.runs(variant)])

    def motion_statistic(self, variant: Variant, key: str, field_name: str) -> tuple[float, float]:
        return mean_and_std([getattr(m.motion(key), field_name, None) for m in self.runs(variant)])

    def situation_statistic(self, variant: Variant, name: str, field_name: str,
                            masks_alone: bool = False) -> tuple[float, float]:
        return mean_and_std([getattr(m.situation(name, masks_alone), field_name, None) for m in self.runs(variant)])

    @property
    def situations(self) -> list[str]:
        """The situations the held-out scenes have (none on road scenes without labels for them)."""
        from mds_core.evaluation.situations import SITUATIONS

        return [name for name in SITUATIONS if any(m.situation(name) is not None for m in self.models)]

    def chance(self, key: str, situation: bool = False) -> tuple[float, float]:
        """(prevalence = AP of a random score, F1 of calling every pixel moving) for a motion score, or for
        a situation's."""
        for model in self.models:
            result = model.situation(key) if situation else model.motion(key)
            if result is not None and result.num_positive + result.num_negative > 0:
                rate = result.num_positive / (result.num_positive + result.num_negative)
                return rate, 2 * rate / (1 + rate)
        return float("nan"), float("nan")

    def to_json_dict(self) -> dict[str, Any]:
        from mds_core.evaluation.report import json_safe

        summary = {}
        for variant in self.preset.variants:
            entry: dict[str, Any] = {"depth": {key: {metric: self.depth_statistic(variant, key, metric)
                                                     for metric in SUMMARY_METRICS} for _, key in REGIONS}}
            if variant.rung in ("full", "movers") and variant != VARIANTS[0]:
                entry["abs_rel_change_vs_k1"] = {key: self.abs_rel_change(variant, key) for _, key in REGIONS}
                entry["moving_minus_background"] = self.moving_minus_background(variant)
            if variant.segments:
                entry["motion"] = {key: {"best_f1": self.motion_statistic(variant, key, "best_f1"),
                                         "average_precision": self.motion_statistic(variant, key, "average_precision")}
                                   for key, _ in MOTION_SCORES}
            for key, masks_alone in (("situations", False), ("situations_masks_alone", True)):
                if variant.segments and self.situations and (not masks_alone or variant.motion_model == "components"):
                    entry[key] = {name: {score: self.situation_statistic(variant, name, score, masks_alone)
                                         for score in ("best_f1", "average_precision")} for name in self.situations}
            summary[variant.name] = entry
        return json_safe({
            "preset": dataclasses.asdict(self.preset),
            "device": self.device,
            "machine": self.machine,
            "wall_seconds": self.wall_seconds,
            "num_train_samples": self.num_train_samples,
            "num_heldout_frames": self.models[0].depth.num_images,
            "montage_frames": [{"sequence": s, "frame": f} for s, f in self.montage],
            "summary": summary,  # [mean, std] over seeds
            "chance": {key: dict(zip(("prevalence", "all_moving_f1"), self.chance(key), strict=True))
                       for key, _ in MOTION_SCORES},
            "situation_chance": {name: dict(zip(("prevalence", "all_moving_f1"), self.chance(name, situation=True),
                                                strict=True)) for name in self.situations},
            "runs": [m.to_json_dict() for m in self.models],
            "reused": [{"variant": name, "seed": seed} for name, seed in self.reused],
            "notes": self.notes,
        })

    def to_markdown(self) -> str:
        p = self.preset
        first = self.models[0]
        depth = first.depth
        seeds = ", ".join(str(s) for s in p.training_seeds)
        lines = [
            "# K=1 vs K=5 on synthetic street scenes",
            "",
            f"- **preset**: `{p.name}`: {p.width}x{p.height}, {p.encoder} encoders, {p.steps} steps of batch "
            f"{p.batch_size} per model ({_schedule(first.epochs)}), training seed(s) {seeds}",
            f"- **training data**: {p.train_sequences} generated sequence(s) x {p.frames_per_sequence} frames "
            f"({self.num_train_samples} samples, data seed {p.seed})",
            f"- **held-out data**: {p.heldout_sequences} sequence(s) x {p.heldout_frames} frames (other seeds); "
            f"{depth.num_images} frames scored for depth, {depth.num_labelled_images} with motion labels",
            f"- **machine**: {self.machine}; device `{self.device}`",
            f"- **wall time**: {self._wall_time()}",
            "",
            f"Mean ± standard deviation over {p.seeds} training seed(s). Depth: per-image median scaling, "
            "valid 1e-3 < gt < 80 m; overall = mean over images, regions = pixels pooled over images. "
            "Lower abs_rel and higher a1 are better.",
            "",
            "| model | " + " | ".join(f"{label} {metric}" for label, _ in REGIONS for metric in SUMMARY_METRICS) + " |",
            "|---|" + "---|" * (len(REGIONS) * len(SUMMARY_METRICS)),
        ]
        for variant in p.variants:
            if variant.rung == "depth":
                continue  # its depth is the ground truth
            cells = [_pm(self.depth_statistic(variant, key, metric)) for _, key in REGIONS for metric in SUMMARY_METRICS]
            lines.append(f"| {variant.name} | " + " | ".join(cells) + " |")
        lines += self._change_lines()
        from mds_core.inference.predictor import MASK_SHARE

        lines += ["", f"Motion segmentation of the decomposition (moving probability = {MASK_SHARE:g} of 1 - mask of "
                      f"the largest component and {1 - MASK_SHARE:g} of the optical flow's evidence where the frames "
                      "can show motion, the mask beyond, accumulated over the drive along the optical flow; the scene "
                      "flow's motion mask). "
                      "*Relative movers*: moving pixels that the previous frame does not already "
                      "explain (a car followed at the camera's speed looks static and is excluded there).", "",
                  "| model | " + " | ".join(f"{label} best F1 | {label} AP" for _, label in MOTION_SCORES) + " |",
                  "|---|" + "---|---|" * len(MOTION_SCORES)]
        for variant in p.variants:
            if not variant.segments:
                continue
            cells = [f"{_pm(self.motion_statistic(variant, key, 'best_f1'))} | "
                     f"{_pm(self.motion_statistic(variant, key, 'average_precision'))}" for key, _ in MOTION_SCORES]
            lines.append(f"| {variant.name} | " + " | ".join(cells) + " |")
        chance = [f"{label}: calling every pixel moving gives F1 {_fmt(self.chance(key)[1])}, a random score "
                  f"AP {_fmt(self.chance(key)[0])} (the prevalence)" for key, label in MOTION_SCORES]
        lines += ["", "Chance levels: " + "; ".join(chance) + ". K=1 has one component: nothing to segment."]
        lines += self._situation_lines()
        lines += ["", "| model | seed | training time | loss (first 10 steps -> last 10) |", "|---|---|---|---|"]
        for model in self.models:
            lines.append(f"| {model.label} | {model.seed} | {model.train_seconds / 60:.1f} min ({model.steps} steps, "
                         f"{model.train_seconds / max(1, model.steps):.2f} s/step) | "
                         f"{model.loss_first:.4f} -> {model.loss_last:.4f} |")
        shown = ", ".join(f"{s} #{f}" for s, f in self.montage)
        columns = (list(MONTAGE_COLUMNS) + ([ORACLE_COLUMN] if "depth" in p.rungs else [])
                   + (list(SCENE_FLOW_COLUMNS) if any(v.motion_model == "scene_flow" for v in p.variants) else []))
        lines += ["", f"Pictures: `{self.png_path.name}` ({' | '.join(columns)}), seed {p.seed}; held-out "
                      f"frames {shown} (the frames with the most moving pixels in the ground truth, at least 5 "
                      "frames apart)."]
        if self.situations:
            lines += ["", f"`situations.png`: per situation the held-out frame that shows most of it (seed {p.seed}): "
                          f"{' | '.join(SITUATION_COLUMNS)}."]
        if self.notes:
            lines += [""] + [f"Note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


    def _situation_lines(self) -> list[str]:
        """Motion scores per situation: movers along the road, across it, pedestrians, the camera standing."""
        names = self.situations
        if not names:
            return []
        from mds_core.inference.predictor import MASK_SHARE

        lines = ["", f"Per situation (the moving probability: the masks weighed {MASK_SHARE:g} against "
                     f"{1 - MASK_SHARE:g} with the optical flow's evidence where the frames can show motion, "
                     "accumulated over the drive along the flow; 'masks alone': the paper's 1 - background mask, "
                     "frame by frame): the moving pixels of one kind of mover against "
                     "the static ones, the other movers ignored; camera stopped: the frames in which the camera stood "
                     "still.", "",
                 "| model | " + " | ".join(f"{name} best F1 | {name} AP" for name in names) + " |",
                 "|---|" + "---|---|" * len(names)]
        for variant in self.preset.variants:
            for masks_alone in (False, True):
                if not variant.segments or (masks_alone and variant.motion_model != "components"):
                    continue
                cells = [f"{_pm(self.situation_statistic(variant, name, 'best_f1', masks_alone))} | "
                         f"{_pm(self.situation_statistic(variant, name, 'average_precision', masks_alone))}"
                         for name in names]
                label = f"{variant.name}, masks alone" if masks_alone else variant.name
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        cells = [f"{_fmt(self.chance(name, True)[1])} | {_fmt(self.chance(name, True)[0])}" for name in names]
        lines.append("| chance (all-moving F1, prevalence) | " + " | ".join(cells) + " |")
        return lines

    def _wall_time(self) -> str:
        text = f"{self.wall_seconds / 60:.1f} min in all (data, trainings, evaluation, pictures)"
        if self.reused:
            seconds = sum(m.train_seconds for m in self.models if (m.variant.name, m.seed) in self.reused)
            text += (f"; {len(self.reused)} of the {len(self.models)} models were trained by an earlier run "
                     f"({seconds / 60:.1f} min of training) and only evaluated again (`--reuse`)")
        return text

    def abs_rel_change(self, variant: Variant, region: str, baseline: Variant = VARIANTS[0]) -> tuple[float, float]:
        """Mean and std over seeds of ``variant``'s abs_rel relative to ``baseline``'s (K=1) of the same seed,
        minus 1 (negative: ``variant`` is better there)."""
        baseline = {m.seed: m.region(region) for m in self.runs(baseline)}
        changes = []
        for model in self.runs(variant):
            mine, theirs = model.region(region), baseline.get(model.seed)
            if mine is not None and theirs is not None and theirs.abs_rel > 0:
                changes.append(mine.abs_rel / theirs.abs_rel - 1.0)
        return mean_and_std(changes)

    def moving_minus_background(self, variant: Variant, baseline: Variant = VARIANTS[0]) -> tuple[float, float]:
        """Mean and std over seeds of (abs_rel change on moving objects) - (change on the static
        background), each against ``baseline`` (K=1) of the same seed: negative where ``variant`` helps
        moving objects more than the background."""
        moving = {m.seed: m for m in self.runs(variant)}
        baseline = {m.seed: m for m in self.runs(baseline)}
        differences = []
        for seed in sorted(set(moving) & set(baseline)):
            regions = [(moving[seed].region(key), baseline[seed].region(key)) for key in ("moving", "static_background")]
            if all(mine is not None and theirs is not None and theirs.abs_rel > 0 for mine, theirs in regions):
                (m, m1), (b, b1) = regions
                differences.append((m.abs_rel / m1.abs_rel) - (b.abs_rel / b1.abs_rel))
        return mean_and_std(differences)

    def _change_lines(self) -> list[str]:
        """The table of K=5's abs_rel change against K=1, seed by seed, per region."""
        lines = ["", "abs_rel of K=5 relative to K=1 trained with the same seed (negative: K=5 is better). The "
                     "decomposition should help moving objects more than the static background (last column: "
                     "the moving objects' change minus the background's, seed by seed):", "",
                 "| model | " + " | ".join(label for label, _ in REGIONS) + " | moving minus background |",
                 "|---|" + "---|" * (len(REGIONS) + 1)]
        pairs = [(variant, VARIANTS[0]) for variant in self.preset.variants[1:] if variant.rung in ("full", "movers")]
        if "motion" in self.preset.rungs:  # the depth claim with a perfect decomposition: both given the true motion
            camera, scene = (next(v for v in VARIANTS if v.folder == name) for name in ("true_camera", "true_scene"))
            pairs.append((scene, camera))
        for variant, baseline in pairs:
            cells = [_percent(self.abs_rel_change(variant, key, baseline)) for _, key in REGIONS]
            cells.append(_percent(self.moving_minus_background(variant, baseline), points=True))
            lines.append(f"| {variant.name} vs {baseline.name} | " + " | ".join(cells) + " |")
        return lines


def _percent(summary: tuple[float, float], points: bool = False) -> str:
    """``+1.2% ± 0.3%`` (or percentage points, ``+1.2 ± 0.3 points``)."""
    mean, std = summary
    if not math.isfinite(mean):
        return "-"
    if points:
        return f"{100 * mean:+.1f} ± {100 * std:.1f} points"
    return f"{100 * mean:+.1f}% ± {100 * std:.1f}%"


def _schedule(epochs: int) -> str:
    decay = epochs // 4  # as in training_config
    if decay == 0:
        return f"{epochs} epoch(s), constant lr 1e-4"
    return f"{epochs} epochs, lr 1e-4, x0.1 for the last {decay}"


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _pm(summary: tuple[float, float]) -> str:
    """``mean ± std`` (std omitted when it is NaN)."""
    mean, std = summary
    return _fmt(mean) if not math.isfinite(std) else f"{_fmt(mean)} ± {_fmt(std)}"


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


def training_config(preset: AccuracyPreset, variant: Variant, data_root: Path, output_dir: Path,
                    num_samples: int, seed: int | None = None) -> TrainConfig:
    """The training config of one variant; K=1 and K=5 differ only in ``num_components`` (and their
    ``output_dir``), the oracle rung also in its overrides.

    Epochs are chosen so that ``preset.steps`` steps fit, with the paper's schedule shape: lr x0.1
    for the last quarter of the epochs (none for runs shorter than 4 epochs).
    """
    from mds_core.config import apply_overrides
    from mds_core.training.sampler import EpochBatches

    seed = preset.seed if seed is None else seed
    batches_per_epoch = EpochBatches(num_samples, preset.batch_size, seed).batches_per_epoch
    epochs = max(1, math.ceil(preset.steps / batches_per_epoch))
    config = TrainConfig()
    config.model = ModelConfig(height=preset.height, width=preset.width, depth_encoder=preset.encoder,
                               pose_mask_encoder=preset.encoder, num_components=variant.num_components,
                               motion_model=variant.motion_model)
    config.data.root = str(data_root)
    config.data.num_workers = preset.num_workers
    config.output_dir = str(output_dir)
    config.seed = seed
    config.device = preset.device
    config.optim.batch_size = preset.batch_size
    config.optim.epochs = epochs
    config.optim.lr_decay_epochs = epochs // 4
    config.optim.max_steps = preset.steps
    config.logging.scalar_every = max(1, min(50, preset.steps // 20))
    config.logging.image_every = max(1, preset.steps // 4)
    # only checkpoints/last.pt (hundreds of MB each), rewritten every ``checkpoint_every`` steps if set
    config.logging.checkpoint_every = preset.checkpoint_every or preset.steps + 1
    config.logging.keep_checkpoints = 1
    return apply_overrides(config, [*variant.overrides, *preset.overrides])


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


def comparison_montage(baseline: Predictor, decomposer: Predictor, frames: list[tuple[Path, int]],
                       oracle: Predictor | None = None, scene_flow: Predictor | None = None) -> np.ndarray:
    """One row per frame: image | GT depth | K=1 depth | K=5 depth | K=5 decomposition | GT motion,
    plus the decomposition of the oracle rung (GT depth) when ``oracle`` is given and the scene-flow
    model's depth and motion mask when ``scene_flow`` is."""
    import cv2
    import numpy as np

    from mds_core.data.sequence_folder import SequenceFolder
    from mds_core.visualization import (
        colourise_depth,
        colourise_masks,
        colourise_motion_labels,
        colourise_moving_probability,
        overlay,
        panel,
    )

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
        if oracle is not None:
            masks = oracle.predict(image, intrinsics, previous, ground_truth_depth=sequence.depth(index)).masks
            tiles.append(overlay(small, colourise_masks(masks), 0.6))
        if scene_flow is not None:
            following = sequence.image(index + 1) if index + 1 < len(sequence) else None
            flow = scene_flow.predict(image, intrinsics, previous, following=following)
            moving = flow.moving_probability if flow.moving_probability is not None else np.zeros(flow.depth.shape)
            tiles += [colourise_depth(flow.depth), overlay(small, colourise_moving_probability(moving), 0.6)]
    names = (list(MONTAGE_COLUMNS) + ([ORACLE_COLUMN] if oracle is not None else [])
             + (list(SCENE_FLOW_COLUMNS) if scene_flow is not None else []))
    return panel(tiles, columns=len(names), labels=names * (len(tiles) // len(names)))


#: The columns of situations.png: one row per situation (the held-out frame that shows most of it).
SITUATION_COLUMNS = ("image", "K=5 moving probability", "K=5 components", "GT: moving red, parked blue")


def situation_frames(heldout: Path) -> list[tuple[str, Path, int]]:
    """Per situation (:data:`mds_core.evaluation.situations.SITUATIONS`), the held-out frame with the most
    pixels of it that no earlier situation shows: ``(situation, sequence folder, frame index)``; none for
    data without situations."""
    import numpy as np

    from mds_core.data.sequence_folder import find_sequences
    from mds_core.evaluation.motion_segmentation import POSITIVE_LABEL
    from mds_core.evaluation.situations import SITUATIONS, situation_labels

    candidates: dict[str, list[tuple[int, Path, int]]] = {}
    for sequence in find_sequences(heldout):
        for index in range(1, len(sequence)):
            situation, motion = sequence.situation(index), sequence.motion(index)
            if situation is None or motion is None:
                continue
            for name, labels in situation_labels(motion, situation).items():
                count = int(np.count_nonzero(labels == POSITIVE_LABEL))
                if count:
                    candidates.setdefault(name, []).append((-count, sequence.path, index))
    chosen: list[tuple[str, Path, int]] = []
    for name in SITUATIONS:
        shown = {(path, index) for _, path, index in chosen}
        fresh = [(path, index) for _, path, index in sorted(candidates.get(name, [])) if (path, index) not in shown]
        if fresh:
            chosen.append((name, *fresh[0]))
    return chosen


def situation_montage(method: Predictor, frames: list[tuple[str, Path, int]]) -> np.ndarray:
    """One row per situation: image | moving probability (heat map) | components | ground-truth movers."""
    import cv2
    import numpy as np

    from mds_core.data.sequence_folder import SequenceFolder
    from mds_core.method.motion_evidence import LONG_BASELINE_FRAMES
    from mds_core.visualization import colourise_masks, colourise_motion_labels, heat_map, overlay, panel

    tiles, labels = [], []
    for name, path, index in frames:
        sequence = SequenceFolder(path)
        intrinsics, _ = sequence.intrinsics()
        image = sequence.image(index)
        # the frames before it first, as a stream: the moving probability's evidence looks three frames back
        for earlier in range(max(1, index - LONG_BASELINE_FRAMES + 1), index):
            method.predict(sequence.image(earlier), intrinsics, sequence.image(earlier - 1), motion_scores=False)
        prediction = method.predict(image, intrinsics, sequence.image(index - 1))
        small = cv2.resize(image, method.size, interpolation=cv2.INTER_AREA)
        moving = prediction.moving_probability if prediction.moving_probability is not None \
            else np.zeros(small.shape[:2], np.float32)
        tiles += [small, heat_map(moving), overlay(small, colourise_masks(prediction.masks), 0.6),
                  colourise_motion_labels(cv2.resize(sequence.motion(index), method.size,
                                                     interpolation=cv2.INTER_NEAREST))]
        labels += [f"{name.replace('_', ' ')}: {SITUATION_COLUMNS[0]}", *SITUATION_COLUMNS[1:]]
    return panel(tiles, columns=len(SITUATION_COLUMNS), labels=labels)


def _generate(preset: AccuracyPreset, root: Path) -> TrainHeldoutSplit:
    from mds_core.progress import progress
    from mds_core.tools.synth import write_train_heldout

    total = preset.train_sequences * preset.frames_per_sequence + preset.heldout_sequences * preset.heldout_frames
    with progress(total=total, unit="frame", desc="synth") as bar:
        return write_train_heldout(root, width=preset.width, height=preset.height,
                                   train_sequences=preset.train_sequences, train_frames=preset.frames_per_sequence,
                                   heldout_sequences=preset.heldout_sequences, heldout_frames=preset.heldout_frames,
                                   seed=preset.seed, scene=preset.scene, on_frame=lambda _: bar.update(1))


TRAINING_RECORD = "training.json"


def same_training(first: TrainConfig, second: TrainConfig) -> bool:
    """Whether two configs train the same model: equal in every entry, the data's and output's folders
    compared as the folders they name (a run given ``--output`` as an absolute path continues one given it
    relative)."""
    from mds_core.config import config_to_dict

    def identity(config: TrainConfig) -> dict[str, Any]:
        record = config_to_dict(config)
        record["output_dir"] = str(Path(config.output_dir).resolve())
        record["data"]["root"] = str(Path(config.data.root).resolve()) if config.data.root else ""
        return record

    return identity(first) == identity(second)


def reusable_training(folder: Path, config: TrainConfig, scene: str = "road") -> dict[str, Any] | None:
    """The ``training.json`` record of ``folder`` when its checkpoint finished training with exactly
    ``config`` (same data, seed, budget and model) on the same kind of ``scene``, else None (with the
    reason in the log)."""
    from mds_core.checkpoint import CheckpointError, load_checkpoint

    record_path = folder / TRAINING_RECORD
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        if "checkpoint" not in record:  # written when its training started: it did not finish
            LOG.info("%s did not finish training", folder)
            return None
        checkpoint = load_checkpoint(record["checkpoint"], mmap=True)
    except (OSError, ValueError, KeyError, TypeError, CheckpointError) as error:
        LOG.warning("not reusing %s: %s", folder, error)
        return None
    if record.get("scene", "road") != scene:
        LOG.warning("not reusing %s: it was trained on %s scenes", folder, record.get("scene", "road"))
        return None
    if not same_training(checkpoint.config, config):
        LOG.warning("not reusing %s: it was trained with another config", folder)
        return None
    if checkpoint.step != config.optim.max_steps:
        LOG.warning("not reusing %s: its checkpoint is at step %d of %d", folder, checkpoint.step, config.optim.max_steps)
        return None
    return record


def resumable_training(folder: Path, config: TrainConfig, scene: str = "road") -> Path | None:
    """The checkpoint of ``folder`` to resume when it holds an unfinished training with exactly ``config``
    on the same kind of ``scene`` (a run stopped before its last step), else None."""
    from mds_core.checkpoint import LAST, CheckpointError, load_checkpoint

    checkpoint_path = folder / "checkpoints" / LAST
    try:
        record = json.loads((folder / TRAINING_RECORD).read_text())
        checkpoint = load_checkpoint(checkpoint_path, mmap=True)
    except (OSError, ValueError, CheckpointError):
        return None
    if record.get("scene") != scene or not same_training(checkpoint.config, config):
        LOG.warning("not resuming %s: it was trained on other data or with another config", folder)
        return None
    return checkpoint_path if checkpoint.step < config.optim.max_steps else None


@dataclass(frozen=True)
class TrainedModel:
    """A benchmark model's training: its checkpoint, the wall seconds and steps of all its parts, the mean
    loss of its first and last 10 steps, and whether an earlier run had finished it (``reused``)."""

    checkpoint: Path
    seconds: float
    steps: int
    loss_first: float
    loss_last: float
    reused: bool = False


def keep_earlier_checkpoints(folder: Path) -> Path | None:
    """Before a model is trained anew into ``folder`` by a run that reuses what it can, move the checkpoints an
    earlier run left there (trained with another config) to ``checkpoints.earlier-N`` beside them, so that such a
    rerun never deletes hours of training; returns where they went (None when there were none). A run without
    ``reuse`` replaces its folders."""
    from mds_core.checkpoint import checkpoint_files

    checkpoints = folder / "checkpoints"
    if not checkpoint_files(checkpoints):
        return None
    number = 1
    while (kept := folder / f"checkpoints.earlier-{number}").exists():
        number += 1
    checkpoints.rename(kept)
    LOG.warning("kept the checkpoints of an earlier training of %s in %s (delete them when they are not needed)",
                folder, kept)
    return kept


def train_or_reuse(config: TrainConfig, folder: Path, scene: str, reuse: bool, what: str,
                   labels: dict[str, Any] | None = None) -> TrainedModel:
    """Train ``config`` into ``folder``; with ``reuse``, take the finished training of an earlier run instead
    (:func:`reusable_training`) or resume its unfinished one (:func:`resumable_training`). ``scene`` names the
    data (what a reused model must have been trained on); ``labels`` go into the folder's ``training.json``
    with the training's figures; ``what`` names the model in the log."""
    import numpy as np

    from mds_core.training.loop import train

    record = reusable_training(folder, config, scene) if reuse else None
    if record is not None:
        LOG.info("%s: reusing the trained model in %s", what, folder)
        # records of models trained before the losses were kept in them have none
        return TrainedModel(Path(record["checkpoint"]), record["train_seconds"], record["steps"],
                            record.get("loss_first_10", math.nan), record.get("loss_last_10", math.nan), reused=True)
    resume = resumable_training(folder, config, scene) if reuse else None
    LOG.info("%s: training %d steps (%d epochs)%s", what, config.optim.max_steps, config.optim.epochs,
             f", resuming {resume}" if resume else "")
    if reuse and resume is None:
        keep_earlier_checkpoints(folder)
    folder.mkdir(parents=True, exist_ok=True)  # what a stopped run needs to resume: the scene
    (folder / TRAINING_RECORD).write_text(json.dumps({**(labels or {}), "scene": scene}) + "\n")
    # the benchmark owns its folders: a rerun without reuse replaces them
    result = train(config, resume=resume, overwrite=True)
    losses = result.losses or [float("nan")]
    trained = TrainedModel(Path(result.checkpoint), result.seconds, result.steps, result.loss_first_10,
                           float(np.mean(losses[-10:])))
    record = {**(labels or {}), "scene": scene, "checkpoint": str(trained.checkpoint), "steps": trained.steps,
              "train_seconds": trained.seconds, "loss_first_10": trained.loss_first, "loss_last_10": trained.loss_last}
    (folder / TRAINING_RECORD).write_text(json.dumps(record, indent=2, allow_nan=True) + "\n")
    return trained


@dataclass(frozen=True)
class TrainingJob:
    """The arguments of one :func:`train_or_reuse` call."""

    config: TrainConfig
    folder: Path
    scene: str
    reuse: bool
    what: str
    labels: dict[str, Any]

    def run(self) -> TrainedModel:
        return train_or_reuse(self.config, self.folder, self.scene, self.reuse, self.what, self.labels)


def _start_worker(log_level: int) -> None:
    """A training worker's start: the benchmark's log level, and, on Linux, the kernel asked to stop this process
    when the benchmark that started it ends (a killed benchmark must not leave its trainings running)."""
    import ctypes
    import ctypes.util
    import signal

    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_with_threads(job: TrainingJob, threads: int) -> TrainedModel:
    import torch

    torch.set_num_threads(threads)
    return job.run()


def train_all(jobs: list[TrainingJob], parallel: int, device: torch.device) -> list[TrainedModel]:
    """Run ``jobs`` in order, or on the CPU ``parallel`` at a time, each in its own process with an equal
    share of this process's threads (at least one). A GPU runs them one after the other."""
    if parallel <= 1 or len(jobs) <= 1 or device.type != "cpu":
        return [job.run() for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    workers = min(parallel, len(jobs))
    threads = max(1, torch.get_num_threads() // workers)
    LOG.info("training %d models, %d at a time with %d thread(s) each", len(jobs), workers, threads)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                             initargs=(logging.getLogger().getEffectiveLevel(),)) as pool:
        futures = [pool.submit(_run_with_threads, job, threads) for job in jobs]
        return [future.result() for future in futures]


def run_accuracy_benchmark(preset: AccuracyPreset, output_dir: str | Path, reuse: bool = False) -> AccuracyResult:
    """Generate data once; for each seed train (or, with ``reuse``, take the finished training of an
    earlier run: :func:`reusable_training`) and evaluate every variant; write the reports."""

    from mds_core.data.factory import build_dataset
    from mds_core.device import resolve_device
    from mds_core.evaluation.evaluate import EvaluationRequest, run_evaluation
    from mds_core.inference.predictor import Predictor
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

    runs = [(seed, variant, out / f"seed{seed}" / variant.folder) for seed in preset.training_seeds
            for variant in preset.variants]
    jobs = [TrainingJob(training_config(preset, variant, split.train, folder, num_samples, seed), folder, preset.scene,
                        reuse, f"seed {seed}, {variant.name}", {"variant": variant.name, "seed": seed})
            for seed, variant, folder in runs]
    trainings = train_all(jobs, preset.jobs, device)

    models: list[ModelResult] = []
    reused: list[tuple[str, int]] = []
    pictured: dict[str, Predictor] = {}  # the first seed's predictors, by variant name
    for (seed, variant, folder), job, trained in zip(runs, jobs, trainings):
        config = job.config
        if trained.reused:
            reused.append((variant.name, seed))
        checkpoint = trained.checkpoint
        predictor = Predictor.from_checkpoint(checkpoint, device=str(device))
        LOG.info("seed %d, evaluating %s on %s", seed, variant.name, split.heldout)
        report = run_evaluation(EvaluationRequest(checkpoint=str(checkpoint), data=str(split.heldout),
                                                  device=str(device)), predictor=predictor)
        report.save(folder / "evaluation.json")
        masks_alone = None
        if variant.segments and variant.motion_model == "components":
            masks_alone = run_evaluation(
                EvaluationRequest(checkpoint=str(checkpoint), data=str(split.heldout), device=str(device),
                                  motion_evidence=False),
                predictor=Predictor.from_checkpoint(checkpoint, device=str(device), motion_evidence=False))
            masks_alone.save(folder / "evaluation_masks_alone.json")
        model = ModelResult(variant, seed, report, trained.seconds, trained.steps, config.optim.epochs,
                            trained.loss_first, trained.loss_last, checkpoint, masks_alone)
        models.append(model)
        if seed == preset.seed:
            pictured[variant.name] = predictor

    frames = montage_frames(split.heldout, preset.montage_frames)
    png_path = out / "accuracy.png"
    baseline, method = (pictured[v.name] for v in VARIANTS[:2])
    oracle = next((pictured[v.name] for v in preset.variants if v.rung == "depth"), None)
    scene_flow = next((pictured[v.name] for v in preset.variants if v.motion_model == "scene_flow"), None)
    save_png(png_path, comparison_montage(baseline, method, frames, oracle, scene_flow))
    situations = situation_frames(split.heldout)
    if situations:
        save_png(out / "situations.png", situation_montage(method, situations))

    notes = []
    if device.type == "cpu":
        notes.append("CPU run: fp32, no AMP.")
    accuracy = AccuracyResult(
        preset=preset, device=str(device), machine=describe_machine(device), models=models,
        wall_seconds=time.perf_counter() - started, data=split, num_train_samples=num_samples,
        montage=[(p.name, i) for p, i in frames], markdown_path=out / "accuracy.md",
        json_path=out / "accuracy.json", png_path=png_path, notes=notes, reused=reused,
    )
    accuracy.json_path.write_text(json.dumps(accuracy.to_json_dict(), indent=2, allow_nan=False) + "\n")
    accuracy.markdown_path.write_text(accuracy.to_markdown())
    return accuracy
