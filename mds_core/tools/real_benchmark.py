"""``mds real-benchmark``: the method trained from scratch on real footage, and what can be measured there.

For each real source given, K=1, K=5 and the scene-flow model (Dynamo-Depth) are trained from random
weights on its sequences, on the same budget and schedule (:func:`mds_core.tools.accuracy.training_config`),
and scored with the ground truth the source has:

* **KITTI odometry** (``kitti_odometry``: the standard layout or the VisualSLAM samples' folders): visual
  odometry over each sequence (:func:`mds_core.evaluation.odometry.sequence_trajectory`), ATE after Sim(3)
  alignment and RPE against its poses, next to a constant-velocity straight line's
  (:func:`~mds_core.evaluation.odometry.straight_line`: the trivial answer an estimate has to beat);
* **clips with lidar** (``lidar_clips``: Dynamo-Depth's ``assets/tiny_*`` samples,
  :mod:`mds_core.data.lidar_clips`): too short to train on, so the models trained on the KITTI odometry
  drives are scored there, unseen: depth abs_rel and a1 with per-image median scaling against the sparse
  lidar, next to one constant depth per image (median-scaled: the trivial answer);
* **DAVIS 2016** (``davis``, the clips named, intrinsics from a field of view): motion AP and best F1 of the
  moving probability against the annotated main mover, next to the prevalence (a random score's AP) and the
  F1 of calling every pixel moving. DAVIS cameras follow their subject, and its masks mark one object
  (other movers count as static): read the scores as a lower bound.

It writes ``real.md``, ``real.json``, per source a picture ``real_<source>.png`` (rows of real frames:
image | K=1 depth | K=5 depth | K=5 components | K=5 moving probability | scene-flow moving probability)
and per KITTI sequence a top view of K=5's trajectory (``trajectory_<sequence>.png``). With ``reuse``,
finished models are scored again and unfinished ones resume (as ``mds accuracy --reuse``).

Real footage cannot be downloaded by the project; docs/real-footage.md says where the public samples are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mds_core.config import DataConfig, FootageConfig, ModelConfig

if TYPE_CHECKING:
    import numpy as np

    from mds_core.data.sequence_folder import FrameSequence
    from mds_core.inference.predictor import Predictor
    from mds_core.tools.accuracy import TrainedModel, Variant

LOG = logging.getLogger(__name__)

#: The DAVIS 2016 clips of road vehicles (the others show people and animals).
DAVIS_VEHICLES: tuple[str, ...] = ("car-roundabout", "car-shadow", "drift-straight")
#: Frames pictured per source.
PICTURED_FRAMES = 3


@dataclass(frozen=True)
class RealSource:
    """One real data set: its reader (``data.format``), root, camera options and the model size for it."""

    name: str  # "kitti_odometry" or "davis"
    root: str
    footage: FootageConfig
    width: int
    height: int

    @property
    def scores_odometry(self) -> bool:
        """Whether the source has camera poses (KITTI odometry) to score the odometry against."""
        return self.name == "kitti_odometry"

    @property
    def scores_motion(self) -> bool:
        """Whether the source has motion masks (DAVIS) to score the moving probability against."""
        return self.name == "davis"

    @property
    def overrides(self) -> tuple[str, ...]:
        """``section.key=value`` settings that point a training config at this source."""
        footage = dataclasses.asdict(self.footage)
        return (f"data.format={self.name}", *(f"data.footage.{key}={json.dumps(value)}"
                                              for key, value in footage.items() if value not in (None, "", [])))


@dataclass
class RealBenchmarkConfig:
    """What to train on and how long; every model of a source gets the same data and budget."""

    kitti_odometry: str | None = None
    lidar_clips: str | None = None  # scored with the models trained on kitti_odometry
    davis: str | None = None
    davis_sequences: tuple[str, ...] = DAVIS_VEHICLES
    davis_fov: float = 60.0  # degrees across: DAVIS comes without intrinsics
    steps: int = 400
    batch_size: int = 4
    seed: int = 0
    device: str = "cpu"
    scene_flow: bool = True
    checkpoint_every: int = 100
    # model sizes (width, height), multiples of 32 near each source's aspect (KITTI 3.3:1, DAVIS 16:9)
    kitti_size: tuple[int, int] = (192, 64)
    davis_size: tuple[int, int] = (192, 96)

    def validate(self) -> None:
        if not self.kitti_odometry and not self.davis:
            raise ValueError("give at least one real source: --kitti-odometry ROOT and/or --davis ROOT")
        for name, root in (("--kitti-odometry", self.kitti_odometry), ("--lidar-clips", self.lidar_clips),
                           ("--davis", self.davis)):
            if root and not Path(root).is_dir():
                raise ValueError(f"{name} {root}: not a directory")
        if self.lidar_clips and not self.kitti_odometry:
            raise ValueError("--lidar-clips scores the models trained on --kitti-odometry: give that too")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch size must be >= 1")
        if not 0 < self.davis_fov < 180:
            raise ValueError(f"the DAVIS field of view must be in (0, 180) degrees, got {self.davis_fov}")

    def sources(self) -> list[RealSource]:
        sources = []
        if self.kitti_odometry:
            sources.append(RealSource("kitti_odometry", self.kitti_odometry, FootageConfig(), *self.kitti_size))
        if self.davis:
            footage = FootageConfig(fov=self.davis_fov, sequences=list(self.davis_sequences))
            sources.append(RealSource("davis", self.davis, footage, *self.davis_size))
        return sources

    def variants(self) -> list[Variant]:
        from mds_core.tools.accuracy import VARIANTS

        return [v for v in VARIANTS if v.rung == "full" and (self.scene_flow or v.motion_model != "scene_flow")]


@dataclass
class SourceResult:
    """The scores of every model on one source (keyed by variant name)."""

    source: RealSource
    num_samples: int
    train_seconds: dict[str, float] = field(default_factory=dict)
    odometry: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # variant -> sequence -> errors
    straight_line: dict[str, dict[str, float]] = field(default_factory=dict)  # sequence -> errors
    motion: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant -> motion_summary
    lidar_depth: dict[str, dict[str, float]] = field(default_factory=dict)  # variant (or the constant) -> metrics
    pictures: list[Path] = field(default_factory=list)


def _errors(errors) -> dict[str, float]:
    return {"ate": errors.ate_rmse, "rpe_translation": errors.rpe_translation_rmse,
            "rpe_rotation_deg": errors.rpe_rotation_rmse_deg, "path_length": errors.path_length,
            "frames": errors.frames}


def source_preset(config: RealBenchmarkConfig, source: RealSource):
    """The :class:`~mds_core.tools.accuracy.AccuracyPreset` whose training budget the source's models get
    (its data counts are unused: the footage is the data)."""
    from mds_core.tools.accuracy import AccuracyPreset

    return AccuracyPreset(name=f"real {source.name}", width=source.width, height=source.height, train_sequences=1,
                          frames_per_sequence=3, heldout_sequences=1, heldout_frames=2, steps=config.steps,
                          batch_size=config.batch_size, seed=config.seed, device=config.device,
                          overrides=source.overrides, checkpoint_every=config.checkpoint_every)


def _train_or_reuse(config: RealBenchmarkConfig, source: RealSource, variant: Variant, folder: Path,
                    num_samples: int, reuse: bool) -> TrainedModel:
    """One model of one source, on the accuracy benchmark's schedule (reused or resumed with ``reuse``)."""
    from mds_core.tools.accuracy import train_or_reuse, training_config

    train_config = training_config(source_preset(config, source), variant, Path(source.root), folder, num_samples,
                                   config.seed)
    return train_or_reuse(train_config, folder, f"real:{source.name}", reuse, f"{source.name}, {variant.name}",
                          {"variant": variant.name})


def score_odometry(predictor: Predictor, sequences: list[FrameSequence], result: SourceResult, variant: str,
                   plots: Path | None = None) -> None:
    """ATE / RPE of the predictor's odometry on every sequence with poses (and the straight line's)."""
    from mds_core.evaluation.odometry import evaluate_trajectory, sequence_trajectory, straight_line, trajectory_plot
    from mds_core.visualization import save_png

    for sequence in sequences:
        truth = getattr(sequence, "poses", lambda: None)()
        if truth is None:
            continue
        estimate = sequence_trajectory(predictor, sequence).poses
        errors, aligned = evaluate_trajectory(estimate, truth, "sim3")
        result.odometry.setdefault(variant, {})[sequence.name] = _errors(errors)
        result.straight_line[sequence.name] = _errors(evaluate_trajectory(straight_line(len(truth)), truth)[0])
        if plots is not None:
            path = plots / f"trajectory_{sequence.name}.png"
            save_png(path, trajectory_plot(truth, aligned, f"{sequence.name} {variant}: ATE {errors.ate_rmse:.3f}"))
            result.pictures.append(path)


def score_motion(predictor: Predictor, checkpoint: Path, source: RealSource, device: str) -> dict[str, Any] | None:
    """Motion AP / best F1 (with the chance levels) against the source's motion masks; None without any."""
    from mds_core.evaluation.evaluate import EvaluationRequest, run_evaluation
    from mds_core.evaluation.report import motion_summary

    report = run_evaluation(EvaluationRequest(checkpoint=str(checkpoint), data=source.root, data_format=source.name,
                                              device=device, footage=source.footage), predictor=predictor)
    scores = report.motion_scores.get("mask/all")
    return motion_summary(scores) if scores is not None and scores.has_positives else None


#: The row of the trivial depth answer in the lidar-clip table.
CONSTANT_DEPTH = "constant depth per image"


def score_lidar_depth(predictor: Predictor, checkpoint: Path, root: str, device: str) -> dict[str, float]:
    """abs_rel, a1 (and the other Eigen metrics) of the predictor's depth against the clips' lidar."""
    from mds_core.evaluation.evaluate import EvaluationRequest, run_evaluation

    report = run_evaluation(EvaluationRequest(checkpoint=str(checkpoint), data=root, data_format="lidar_clips",
                                              device=device), predictor=predictor)
    assert report.depth is not None, "run_evaluation refuses data without any ground truth"
    return {**report.depth.overall.as_dict(), "images": report.depth.num_images}


def constant_depth_scores(root: str) -> dict[str, float]:
    """The same metrics for one constant depth per image, median-scaled (every pixel at the lidar's median)."""
    import numpy as np

    from mds_core.data.factory import open_sequences
    from mds_core.evaluation.metrics import DepthEvaluator

    evaluator = DepthEvaluator()
    for clip in open_sequences("lidar_clips", root):
        for index in range(len(clip)):
            truth = clip.depth(index)
            if truth is not None:
                evaluator.add(np.ones_like(truth), truth)
    result = evaluator.result()
    return {**result.overall.as_dict(), "images": result.num_images}


def real_frames_picture(predictors: dict[str, Predictor], sequences: list[FrameSequence]) -> np.ndarray:
    """Rows of real frames (the middle of each of the first sequences): image | K=1 depth | K=5 depth |
    K=5 components | K=5 moving probability | scene-flow moving probability (when trained)."""
    import cv2
    import numpy as np

    from mds_core.visualization import colourise_depth, colourise_masks, heat_map, overlay, panel

    baseline, method, flow = predictors["K=1"], predictors["K=5"], predictors.get("scene flow")
    names = ["image", "K=1 depth", "K=5 depth", "K=5 components", "K=5 moving probability"]
    names += ["scene-flow moving probability"] if flow is not None else []
    tiles, labels = [], []
    frames = [(s, len(s) // 2) for s in sequences if len(s) >= 3]
    if len(frames) < PICTURED_FRAMES and sequences and len(sequences[0]) >= 3:  # one long clip: three moments
        first = sequences[0]
        frames = [(first, max(1, round(len(first) * f))) for f in (0.25, 0.5, 0.75)]
    for sequence, index in frames[:PICTURED_FRAMES]:
        intrinsics, _ = sequence.intrinsics()
        image, previous = sequence.image(index), sequence.image(index - 1)
        prediction = method.predict(image, intrinsics, previous, motion_scores=False)
        small = cv2.resize(image, method.size, interpolation=cv2.INTER_AREA)
        moving = prediction.moving_probability
        row = [small, colourise_depth(baseline.predict(image, intrinsics).depth), colourise_depth(prediction.depth),
               overlay(small, colourise_masks(prediction.masks), 0.6), heat_map(moving)]
        if flow is not None:
            following = sequence.image(index + 1) if index + 1 < len(sequence) else None
            flowing = flow.predict(image, intrinsics, previous, following=following, motion_scores=False)
            row.append(heat_map(flowing.moving_probability if flowing.moving_probability is not None
                                else np.zeros(small.shape[:2], np.float32)))
        tiles += row
        labels += [f"{sequence.name} #{index}", *names[1:]]
    return panel(tiles, columns=len(names), labels=labels)


def run_real_benchmark(config: RealBenchmarkConfig, output_dir: str | Path, reuse: bool = False) -> list[SourceResult]:
    """Train and score every model on every source; write the reports. Returns the per-source results."""
    from mds_core.data.factory import build_dataset, open_sequences
    from mds_core.device import resolve_device
    from mds_core.inference.predictor import Predictor
    from mds_core.visualization import save_png

    config.validate()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = str(resolve_device(config.device))
    started = time.perf_counter()
    results = []
    for source in config.sources():
        data = DataConfig(root=source.root, format=source.name, footage=source.footage)
        num_samples = len(build_dataset(data, ModelConfig(height=source.height, width=source.width), seed=config.seed))
        sequences = open_sequences(source.name, source.root, source.footage)
        result = SourceResult(source, num_samples)
        predictors: dict[str, Predictor] = {}
        for variant in config.variants():
            trained = _train_or_reuse(config, source, variant, out / source.name / variant.folder, num_samples, reuse)
            checkpoint = trained.checkpoint
            result.train_seconds[variant.name] = trained.seconds
            predictor = predictors[variant.name] = Predictor.from_checkpoint(checkpoint, device=device)
            if source.scores_odometry:
                score_odometry(predictor, sequences, result, variant.name, out if variant.name == "K=5" else None)
                if config.lidar_clips:
                    result.lidar_depth[variant.name] = score_lidar_depth(predictor, checkpoint, config.lidar_clips,
                                                                         device)
            if source.scores_motion and variant.segments:
                motion = score_motion(predictor, checkpoint, source, device)
                if motion is not None:
                    result.motion[variant.name] = motion
        if result.lidar_depth:
            result.lidar_depth[CONSTANT_DEPTH] = constant_depth_scores(str(config.lidar_clips))
        picture = out / f"real_{source.name}.png"
        save_png(picture, real_frames_picture(predictors, sequences))
        result.pictures.insert(0, picture)
        results.append(result)
    (out / "real.json").write_text(json.dumps(to_json(config, results, time.perf_counter() - started), indent=2,
                                              allow_nan=True) + "\n")
    (out / "real.md").write_text(to_markdown(config, results, time.perf_counter() - started))
    return results


def to_json(config: RealBenchmarkConfig, results: list[SourceResult], seconds: float) -> dict[str, Any]:
    return {"config": dataclasses.asdict(config), "wall_seconds": seconds, "sources": [
        {"source": dataclasses.asdict(r.source), "num_samples": r.num_samples, "train_seconds": r.train_seconds,
         "odometry": r.odometry, "straight_line": r.straight_line, "motion": r.motion, "lidar_depth": r.lidar_depth,
         "pictures": [p.name for p in r.pictures]} for r in results]}


def _cell(values: dict[str, float] | None) -> str:
    if not values:
        return "-"
    return f"{values['ate']:.3f} / {values['rpe_translation']:.3f} / {values['rpe_rotation_deg']:.2f}"


def to_markdown(config: RealBenchmarkConfig, results: list[SourceResult], seconds: float) -> str:
    lines = ["# The method on real footage", "",
             f"Trained from random weights on each source: {config.steps} steps of batch {config.batch_size}, "
             f"seed {config.seed}, device `{config.device}`; {seconds / 60:.1f} min in all.", ""]
    for result in results:
        source = result.source
        lines += [f"## {source.name} (`{source.root}`, {source.width}x{source.height}, {result.num_samples} "
                  "training samples)", ""]
        minutes = ", ".join(f"{name} {s / 60:.1f} min" for name, s in result.train_seconds.items())
        lines += [f"Training time: {minutes}.", ""]
        names = sorted(result.straight_line)
        if names:
            lines += ["Odometry against the sequences' poses: ATE (Sim(3) aligned, metres) / RPE translation "
                      "(m per frame) / RPE rotation (degrees per frame).", "",
                      "| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
            for variant, sequences in result.odometry.items():
                lines.append(f"| {variant} | " + " | ".join(_cell(sequences.get(n)) for n in names) + " |")
            lines += ["| constant-velocity straight line | " + " | ".join(_cell(result.straight_line[n])
                                                                         for n in names) + " |", ""]
        if result.lidar_depth:
            lines += [f"Depth on the clips with lidar (`{config.lidar_clips}`), unseen in training: per-image median "
                      "scaling, the Eigen metrics' abs_rel (lower is better) and a1 (higher is better).", "",
                      "| model | abs_rel | a1 | images |", "|---|---|---|---|"]
            lines += [f"| {name} | {m['abs_rel']:.3f} | {m['a1']:.3f} | {m['images']} |"
                      for name, m in result.lidar_depth.items()] + [""]
        if result.motion:
            chance = next(iter(result.motion.values()))
            lines += ["Motion segmentation against the annotated mover (the moving probability; chance: a random "
                      "score's AP is the prevalence, calling every pixel moving gives the all-moving F1).", "",
                      "| model | AP | best F1 |", "|---|---|---|"]
            lines += [f"| {variant} | {m['average_precision']:.3f} | {m['best_f1']:.3f} |"
                      for variant, m in result.motion.items()]
            lines += [f"| chance | {chance['prevalence']:.3f} | {chance['all_moving_f1']:.3f} |", ""]
        lines += [f"![{source.name}]({p.name})" for p in result.pictures] + [""]
    return "\n".join(lines)

