"""``mds benchmark``: training step time and peak memory on random frames.

Times full optimisation steps (forward, the four-scale loss, backward, Adam) after warm-up.
The steps are timed as training runs them once past its warm-ups (the K=1 warm-up of the
decomposition and the start of auto-masking), so every loss term the config enables is in them.
``overrides`` (``section.key=value``, as ``mds train --set``) change the training config after
the size settings, e.g. to include the decomposition learning aids in the loss.

With a ``checkpoint`` the steps are timed as that training would continue them: its config, weights,
optimiser state and stage, on the first batch of its own training data. A trained network can be
slower per step than a fresh one (subnormal floats: :func:`mds_core.training.cpu.flush_denormals`,
which ``keep_denormals`` turns off to measure the difference).
Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA and the process's peak resident
set size on CPU (which includes the Python interpreter and libraries).
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from dataclasses import dataclass, field

import torch

from mds_core.checkpoint import load_checkpoint
from mds_core.config import ModelConfig, TrainConfig, apply_overrides
from mds_core.data.dataset import sample_optical_flow
from mds_core.data.factory import build_dataset
from mds_core.data.sample import Batch, OpticalFlow, collate_samples
from mds_core.device import resolve_device
from mds_core.method.losses import SelfSupervisedObjective
from mds_core.training.distributed import DistributedContext
from mds_core.training.loop import (
    Precision,
    TrainingState,
    build_training_state,
    enter_stage,
    restore_training_state,
    total_training_steps,
    train_step,
)
from mds_core.training.sampler import EpochBatches
from mds_core.training.stages import stage_at, training_stages


@dataclass
class TrainStepBenchmark:
    width: int = 320
    height: int = 96
    encoder: str = "resnet18"
    num_components: int = 5
    batch_size: int = 4
    steps: int = 10
    warmup: int = 2
    device: str = "auto"
    amp: bool = True
    overrides: list[str] = field(default_factory=list)  # section.key=value, applied last
    cpu_autocast: bool = False  # bf16 autocast on the CPU, as AMP runs on a GPU (the GPU check's dry run)
    checkpoint: str | None = None  # time the steps of this training's continuation (the size settings are its)
    keep_denormals: bool = False  # compute subnormal floats as the CPU does by default (training flushes them)


@dataclass
class TrainStepResult:
    spec: TrainStepBenchmark
    device: str
    precision: str
    step_times: list[float]
    peak_memory_mb: float
    threads: int
    config: TrainConfig  # the training config that was measured (after the overrides)
    step: int  # the training step the steps were timed as (past the warm-ups)
    loss_terms: dict[str, float]  # the last timed step's loss parts (which terms were computed)
    # seconds the optical flow of the batch took (the motion evidence's; None when the loss has none): the
    # training data set computes it in the loader and keeps it for later epochs, so it is not in the step
    flow_seconds: float | None = None

    def to_text(self) -> str:
        median = statistics.median(self.step_times)
        s = self.spec
        model = self.config.model
        return "\n".join([
            f"train step  {model.width}x{model.height}  {model.depth_encoder}  K={model.num_components}  "
            f"batch {s.batch_size}",
            *([f"checkpoint  {s.checkpoint} (its data, weights and optimiser)"] if s.checkpoint else []),
            *(["denormals   kept (subnormal floats computed, not flushed to zero)"] if s.keep_denormals else []),
            *([f"overrides   {' '.join(s.overrides)}"] if s.overrides else []),
            f"device      {self.device} ({self.precision}, {self.threads} CPU threads)",
            f"timed as    training step {self.step} " + ("(the checkpoint's, in its training stage)" if s.checkpoint
                                                         else "(past the warm-ups: every enabled loss term computed)"),
            f"step time   median {median * 1000:.0f} ms  (min {min(self.step_times) * 1000:.0f}, "
            f"max {max(self.step_times) * 1000:.0f}, {len(self.step_times)} steps)",
            f"throughput  {s.batch_size / median:.2f} samples/s",
            *([f"data        optical flow {self.flow_seconds * 1000:.0f} ms a batch, in the loader (the first "
               f"epoch; kept in memory for the later ones)"] if self.flow_seconds is not None else []),
            f"peak memory {self.peak_memory_mb:.0f} MB",
        ])


def random_batch(batch_size: int, height: int, width: int, device: torch.device, seed: int = 0) -> Batch:
    """Random frames (target and two sources) with KITTI-like intrinsics: what speed measurements train on."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.rand(batch_size, 3, 3, height, width, generator=generator)
    intrinsics = torch.tensor([[0.58 * width, 0, 0.5 * width], [0, 1.92 * height, 0.5 * height], [0, 0, 1.0]])
    return Batch(frames, frames, intrinsics.expand(batch_size, 3, 3).clone(), None, None,
                 [str(i) for i in range(batch_size)]).to(device)


def steady_state_step(config: TrainConfig) -> int:
    """The first training step past every warm-up: components on, auto-masking on."""
    return max(config.decomposition.warmup_steps, config.loss.automask_start_step)


def continued_training(checkpoint_path: str, batch_size: int, device: torch.device, amp: bool,
                       overrides: list[str]) -> tuple[TrainConfig, TrainingState, Batch]:
    """The training state a checkpoint continues from (its stage entered, its weights and optimiser
    restored) and the first ``batch_size`` samples of its own training data, as its training loads them."""
    checkpoint = load_checkpoint(checkpoint_path)
    config = apply_overrides(dataclasses.replace(checkpoint.config, device=str(device), amp=amp), overrides)
    config.validate()
    dataset = build_dataset(config.data, config.model, seed=config.seed, training=True)
    total_steps = total_training_steps(config, EpochBatches(len(dataset), config.optim.batch_size, config.seed))
    state = build_training_state(config, device, DistributedContext())
    state.epoch = checkpoint.epoch
    enter_stage(state, stage_at(training_stages(config, total_steps), checkpoint.step))
    restore_training_state(state, checkpoint, checkpoint_path)
    batch = collate_samples([dataset[i] for i in range(min(batch_size, len(dataset)))]).to(device)
    return config, state, batch


def run_train_step_benchmark(spec: TrainStepBenchmark) -> TrainStepResult:
    device = resolve_device(spec.device)
    if spec.checkpoint:
        config, state, batch = continued_training(spec.checkpoint, spec.batch_size, device, spec.amp, spec.overrides)
    else:
        config = TrainConfig(
            model=ModelConfig(height=spec.height, width=spec.width, depth_encoder=spec.encoder,
                              pose_mask_encoder=spec.encoder, num_components=spec.num_components),
            device=str(device), amp=spec.amp,
        )
        config = apply_overrides(config, spec.overrides)
        config.validate()
        state = build_training_state(config, device, DistributedContext())
        state.step = steady_state_step(config)  # train_step does not advance it: every step is timed there
        batch = random_batch(spec.batch_size, spec.height, spec.width, device)
    if spec.keep_denormals:
        torch.set_flush_denormal(False)
    objective = SelfSupervisedObjective(config.loss, config.model)
    if spec.cpu_autocast and device.type == "cpu":
        state.precision = Precision(torch.bfloat16, "cpu")
    flow_seconds = None
    if objective.needs_optical_flow and batch.optical_flow is None:  # training's data set computes it, in the loader
        start = time.perf_counter()
        batch.optical_flow = OpticalFlow.stack([sample_optical_flow(images) for images in batch.images])
        flow_seconds = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(spec.warmup + spec.steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        loss, _ = train_step(state, objective, batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= spec.warmup:
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return TrainStepResult(spec, str(device), str(state.precision.dtype or torch.float32), times, peak,
                           torch.get_num_threads(), config, state.step, loss.scalars(), flow_seconds)

