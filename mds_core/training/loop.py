"""The training loop: build -> (resume) -> epochs of steps -> atomic checkpoints.

Kept as small functions around a :class:`TrainingState` rather than one trainer class:
``build_model`` / ``build_training_state`` make things, ``train_step`` does one optimisation
step, ``checkpoint_of`` snapshots the state, and ``train`` strings them together.
"""

from __future__ import annotations

import logging
import random
import re
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mds_core.checkpoint import (
    LAST,
    Checkpoint,
    CheckpointError,
    capture_rng_state,
    checkpoint_files,
    load_checkpoint,
    load_model_state,
    new_run_id,
    publish_checkpoint,
    readable_checkpoints,
    remove_stale_temporaries,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
)
from mds_core.config import TrainConfig
from mds_core.data.factory import build_dataset
from mds_core.data.sample import Batch, collate_samples
from mds_core.device import resolve_device
from mds_core.method.losses import LossOutput, SelfSupervisedObjective
from mds_core.method.model import ModelOutput, MonoDepthSeg
from mds_core.method.motion_models import MotionModel, create_model, motion_encoders
from mds_core.method.oracle import ground_truth_depth
from mds_core.progress import progress
from mds_core.training.cpu import flush_denormals, keep_freed_memory, use_channels_last
from mds_core.training.distributed import DistributedContext
from mds_core.training.monitor import TrainingMonitor, training_panel
from mds_core.training.sampler import EpochBatches
from mds_core.training.schedule import build_optimizer, build_scheduler
from mds_core.training.stages import Stage, apply_stage, set_training_modes, stage_at, training_stages
from mds_core.visualization import save_png

LOG = logging.getLogger(__name__)


@dataclass
class Precision:
    """Autocast settings: bf16 (or fp16 with loss scaling) on CUDA when AMP is on, else fp32."""

    dtype: torch.dtype | None
    device_type: str

    @classmethod
    def choose(cls, device: torch.device, amp: bool) -> Precision:
        if amp and device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return cls(dtype, "cuda")
        return cls(None, device.type)

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


@dataclass
class TrainingState:
    config: TrainConfig
    model: MotionModel
    network: nn.Module  # the model, wrapped in DDP when distributed
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    precision: Precision
    device: torch.device
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    run_id: str = ""  # recorded in every checkpoint: which run a checkpoint folder belongs to
    stage: Stage | None = None  # the training stage in progress (None: everything trains, as built)


#: Keys of a checkpoint's metrics that last over a resumed run (see :class:`TrainResult`).
TRAIN_SECONDS = "train_seconds"
LOSS_FIRST_10 = "loss_first_10"  # the mean of the first LOSS_FIRST_COUNT (at most 10) steps' losses
LOSS_FIRST_COUNT = "loss_first_count"


@dataclass
class TrainResult:
    checkpoint: Path | None
    steps: int
    losses: list[float] = field(default_factory=list)
    parameter_checksum: float = 0.0  # sum of all weights: equal on every DDP rank when in sync
    # of the whole run, also across resumes (kept in the checkpoints' metrics): wall seconds of training,
    # and the mean loss of its first 10 steps
    seconds: float = 0.0
    loss_first_10: float = float("nan")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(config: TrainConfig) -> MotionModel:
    """The model, with encoders initialised from local pretrained files when configured."""
    model = create_model(config.model)
    if config.pretrained.depth_encoder and model.depth_net is not None:
        model.depth_net.encoder.load_pretrained(config.pretrained.depth_encoder)
    if config.pretrained.pose_mask_encoder:
        for encoder in motion_encoders(model):
            encoder.load_pretrained(config.pretrained.pose_mask_encoder)
    return model


def build_training_state(config: TrainConfig, device: torch.device, context: DistributedContext) -> TrainingState:
    model = build_model(config).to(device)
    if device.type == "cpu":
        use_channels_last(model)
        keep_freed_memory()
        flush_denormals()
    network: nn.Module = model
    if context.enabled:
        ids = [device.index] if device.type == "cuda" else None
        network = DistributedDataParallel(model, device_ids=ids)
    optimizer = build_optimizer(model.parameters(), config.optim)
    precision = Precision.choose(device, config.amp)
    scaler = torch.amp.GradScaler("cuda") if precision.needs_scaler else None
    return TrainingState(config, model, network, optimizer, build_scheduler(optimizer, config.optim),
                         scaler, precision, device)


def enter_stage(state: TrainingState, stage: Stage) -> None:
    """Freeze and switch as ``stage`` says, with a fresh optimiser (and epoch schedule) over what it trains."""
    apply_stage(state.model, stage)
    trained = [p for p in state.model.parameters() if p.requires_grad]
    state.optimizer = build_optimizer(trained, state.config.optim, stage.config.learning_rate_factor)
    state.scheduler = build_scheduler(state.optimizer, state.config.optim, state.epoch)
    if isinstance(state.network, DistributedDataParallel):  # DDP registers the trained parameters when built
        state.network = DistributedDataParallel(state.model, device_ids=state.network.device_ids)
    state.stage = stage


def restore_training_state(state: TrainingState, checkpoint: Checkpoint, source: str) -> None:
    load_model_state(state.model, checkpoint.model, state.config.model, checkpoint.config.model, source)
    if checkpoint.optimizer is None or checkpoint.scheduler is None:
        raise CheckpointError(f"{source} holds weights only (no optimiser state): use --init-from to fine-tune")
    state.optimizer.load_state_dict(checkpoint.optimizer)
    state.scheduler.load_state_dict(checkpoint.scheduler)
    if state.scaler is not None and checkpoint.scaler:
        state.scaler.load_state_dict(checkpoint.scaler)
    state.step, state.epoch, state.batch_in_epoch = checkpoint.step, checkpoint.epoch, checkpoint.batch_in_epoch
    state.run_id = checkpoint.run_id  # a resumed run is the same run
    restore_rng_state(checkpoint.rng)


def checkpoint_of(state: TrainingState, metrics: dict[str, float] | None = None) -> Checkpoint:
    return Checkpoint(
        config=state.config,
        model={k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        step=state.step,
        epoch=state.epoch,
        batch_in_epoch=state.batch_in_epoch,
        optimizer=state.optimizer.state_dict(),
        scheduler=state.scheduler.state_dict(),
        scaler=state.scaler.state_dict() if state.scaler is not None else None,
        rng=capture_rng_state(),
        metrics=metrics or {},
        run_id=state.run_id,
    )


def oracle_depth(config: TrainConfig, batch: Batch) -> torch.Tensor | None:
    """The ground-truth depth the model needs on the oracle rung "depth", else None."""
    model = config.model
    if model.depth_source != "ground_truth":
        return None
    if batch.depth is None:
        raise ValueError("model.depth_source is ground_truth but the batch has no ground-truth depth "
                         "(the data needs depth/NNNNNN.npy for every frame)")
    depth = ground_truth_depth(batch.depth, model.height, model.width, model.min_depth, model.max_depth)
    return depth.to(batch.images.device)


def apply_decomposition_schedule(state: TrainingState) -> None:
    """Switch the K components on after ``decomposition.warmup_steps`` steps (K=1 before)."""
    schedule = state.config.decomposition
    warming_up = state.step < schedule.warmup_steps
    if isinstance(state.model, MonoDepthSeg):
        state.model.components_enabled = not warming_up


def train_step(state: TrainingState, objective: SelfSupervisedObjective, batch: Batch) -> tuple[LossOutput, ModelOutput]:
    """One optimisation step. Networks run under autocast; the warp and losses in fp32."""
    if state.stage is not None:
        set_training_modes(state.model, state.stage)
    else:
        state.network.train()
    apply_decomposition_schedule(state)
    depth = oracle_depth(state.config, batch)
    # the oracle rung "motion" warps with the scene's true motions (mds_core.method.true_motion)
    extra = {} if state.config.model.motion_source == "network" else {"true_motion": batch.true_motion}
    with state.precision.autocast():
        output = state.network(batch.network_images, state.config.data.source_offsets, depth, **extra)
    stage = state.stage
    loss = objective(batch, output, step=state.step, stage_step=None if stage is None else state.step - stage.start,
                     automask=stage is None or stage.config.automask,
                     trains_depth=stage is None or stage.trains("depth"))
    state.optimizer.zero_grad(set_to_none=True)
    if state.scaler is not None:
        state.scaler.scale(loss.total).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        loss.total.backward()
        state.optimizer.step()
    return loss, output


def _prune_checkpoints(directory: Path, keep: int) -> None:
    periodic = sorted(directory.glob("step_*.pt"))
    for old in periodic[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def claim_checkpoint_folder(directory: Path, continuing: str | None, overwrite: bool = False) -> None:
    """Make sure a run may write its checkpoints into ``directory``, or raise a one-line CheckpointError.

    A checkpoint folder belongs to the run whose id its checkpoints record (every checkpoint
    carries the ``run_id`` of the run that wrote it; a fresh run draws a new one, a resumed run
    keeps its checkpoint's). ``continuing`` is the id of the run being resumed, None for a fresh
    run. A fresh run therefore refuses a folder holding any checkpoint, and a resumed run one
    holding a checkpoint of another run, instead of silently overwriting its ``last.pt`` and
    pruning its ``step_NNNNNNN.pt``. Files that do not load as checkpoints are ignored (with a
    warning). ``overwrite=True`` deletes another run's checkpoints instead (for tools that own
    their output folder, such as ``mds demo``).
    """
    foreign = [(path, checkpoint) for path, checkpoint in readable_checkpoints(directory)
               if continuing is None or checkpoint.run_id != continuing]
    if not foreign:
        return
    if overwrite:
        LOG.info("deleting the checkpoints of another run in %s (overwrite)", directory)
        for path in checkpoint_files(directory):
            path.unlink(missing_ok=True)
        return
    path, checkpoint = max(foreign, key=lambda item: item[1].step)
    output = directory.parent
    raise CheckpointError(
        f"{directory} already holds checkpoints of another run ({path.name}: step {checkpoint.step}"
        f"{', run ' + checkpoint.run_id[:8] if checkpoint.run_id else ''}) that this run would overwrite: "
        f"continue that run with --resume {output}, train into another folder with --output, "
        f"or delete {directory}"
    )


def train(config: TrainConfig, resume: str | Path | None = None, init_from: str | Path | None = None,
          overwrite: bool = False, objective: SelfSupervisedObjective | None = None) -> TrainResult:
    """Train the configured model (either motion model); returns the last checkpoint written and this process's step losses.

    ``resume`` continues a run exactly (weights, optimiser, schedule, position, RNG, run id) from
    a checkpoint file, from the newest complete checkpoint in a run's output folder, or with
    ``"latest"`` from the newest one in ``config.output_dir`` (see
    :func:`mds_core.checkpoint.resolve_resume`). ``init_from`` starts a new run from a checkpoint's
    weights only. ``last.pt`` is written at every periodic checkpoint and at the end.

    A run refuses an output folder whose checkpoints belong to another run (see
    :func:`claim_checkpoint_folder`); ``overwrite=True`` deletes them instead. ``objective``: what is
    minimised, by default ``SelfSupervisedObjective(config.loss, config.model)`` (a ladder's oracle
    rung may add a term: scripts/scene_flow_ladder.py).
    """
    config.validate()
    context = DistributedContext.from_environment()
    device = context.device_for(resolve_device(config.device))
    context.initialise(device)
    try:
        return _train(config, context, device, resume, init_from, overwrite, objective)
    finally:
        context.shutdown()


def total_training_steps(config: TrainConfig, batches: EpochBatches) -> int:
    """The steps a training runs: its epochs of ``batches``, or ``optim.max_steps`` if fewer."""
    total = config.optim.epochs * batches.batches_per_epoch
    return total if config.optim.max_steps is None else min(total, config.optim.max_steps)


def _train(config: TrainConfig, context: DistributedContext, device: torch.device,
           resume: str | Path | None, init_from: str | Path | None, overwrite: bool,
           objective: SelfSupervisedObjective | None) -> TrainResult:
    seed_everything(config.seed + context.rank)
    output_dir = Path(config.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    resumed: Checkpoint | None = None
    if resume is not None:
        resume = resolve_resume(resume, output_dir)
        resumed = load_checkpoint(resume)
    if context.is_main or not overwrite:  # before any collective operation, so that every rank stops alike
        claim_checkpoint_folder(checkpoint_dir, resumed.run_id if resumed is not None else None, overwrite)
    if context.is_main:
        remove_stale_temporaries(checkpoint_dir)  # partial files of a killed run's interrupted writes
    dataset = build_dataset(config.data, config.model, seed=config.seed, training=True)
    batches = EpochBatches(len(dataset), config.optim.batch_size, config.seed, context.rank, context.world_size)
    total_steps = total_training_steps(config, batches)
    stages = training_stages(config, total_steps)
    state = build_training_state(config, device, context)
    state.run_id = new_run_id()
    if init_from is not None:
        source = load_checkpoint(init_from)
        load_model_state(state.model, source.model, config.model, source.config.model, str(init_from))
    if resumed is not None:
        state.epoch = resumed.epoch  # the stage's optimiser and schedule are built for the checkpoint's place
    enter_stage(state, stage_at(stages, resumed.step if resumed is not None else 0))
    if resumed is not None:
        restore_training_state(state, resumed, str(resume))
        if context.rank:
            # every rank restored rank 0's RNG; keep their streams distinct as in a fresh run
            torch.manual_seed(config.seed + context.rank + state.step)
        LOG.info("resumed from %s at step %d (epoch %d, batch %d)", resume, state.step, state.epoch, state.batch_in_epoch)

    objective = objective if objective is not None else SelfSupervisedObjective(config.loss, config.model)
    if objective.needs_optical_flow:
        dataset.compute_optical_flow()  # in the loader (and kept for later epochs), not in the step
    monitor = TrainingMonitor(output_dir / "tensorboard", config.logging.tensorboard and context.is_main)
    losses: list[float] = []
    last_path: Path | None = None
    loader_generator = torch.Generator()  # keeps DataLoader from consuming the global RNG
    if context.is_main:
        LOG.info("training on %s: %d samples, %d steps/epoch, %d steps, device %s, precision %s",
                 config.data.describe(), len(dataset), batches.batches_per_epoch, total_steps, device,
                 state.precision.dtype or torch.float32)

    # what a resumed run's checkpoint carries on: the time trained before, and the first steps' losses
    earlier = resumed.metrics if resumed is not None else {}
    seconds_before, started = float(earlier.get(TRAIN_SECONDS, 0.0)), time.perf_counter()
    first_count = int(earlier.get(LOSS_FIRST_COUNT, 0 if resumed is None else 10))
    first_sum = float(earlier.get(LOSS_FIRST_10, float("nan") if first_count else 0.0)) * first_count

    def run_metrics() -> dict[str, float]:
        taken = losses[: 10 - first_count]
        count = first_count + len(taken)
        return {"loss": losses[-1] if losses else float("nan"),
                LOSS_FIRST_10: (first_sum + sum(taken)) / count if count else float("nan"),
                LOSS_FIRST_COUNT: float(count), TRAIN_SECONDS: seconds_before + time.perf_counter() - started}

    def save(path: Path) -> Path:
        return save_checkpoint(path, checkpoint_of(state, run_metrics()))

    try:
        while state.step < total_steps and state.epoch < config.optim.epochs:
            dataset.set_epoch(state.epoch)
            loader = DataLoader(
                dataset,
                batch_sampler=batches.epoch(state.epoch, state.batch_in_epoch),
                collate_fn=collate_samples,
                num_workers=config.data.num_workers,
                pin_memory=device.type == "cuda",
                generator=loader_generator,
            )
            bar = progress(loader, desc=f"epoch {state.epoch + 1}/{config.optim.epochs}",
                           initial=state.batch_in_epoch, total=batches.batches_per_epoch,
                           enabled=context.is_main and config.logging.progress)
            for batch in bar:
                batch = batch.to(device, non_blocking=True)
                loss, output = train_step(state, objective, batch)
                state.step += 1
                state.batch_in_epoch += 1
                losses.append(float(loss.total.detach()))
                following = stage_at(stages, state.step)
                if state.step < total_steps and following is not state.stage:
                    LOG.info("step %d: stage %r (trains %s)", state.step, following.name, ", ".join(following.config.train))
                    enter_stage(state, following)  # before any checkpoint of this step: it holds the new optimiser
                bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{state.optimizer.param_groups[0]['lr']:.1e}")
                if context.is_main:
                    if state.step % config.logging.scalar_every == 0 or state.step == 1:
                        monitor.scalars({**loss.scalars(), "lr": state.optimizer.param_groups[0]["lr"]}, state.step)
                    if state.step % config.logging.image_every == 0 or state.step == 1:
                        image = training_panel(batch, output, loss)
                        monitor.image("panel", image, state.step)
                        (output_dir / "panels").mkdir(parents=True, exist_ok=True)
                        save_png(output_dir / "panels" / f"step_{state.step:07d}.png", image)
                    if state.step % config.logging.checkpoint_every == 0:
                        periodic = save(checkpoint_dir / f"step_{state.step:07d}.pt")
                        publish_checkpoint(periodic, checkpoint_dir / LAST)  # last.pt stays current
                        _prune_checkpoints(checkpoint_dir, config.logging.keep_checkpoints)
                if state.step >= total_steps:
                    break
            bar.close()
            if state.batch_in_epoch >= batches.batches_per_epoch:
                state.epoch += 1
                state.batch_in_epoch = 0
                with warnings.catch_warnings():
                    # an optimiser that has not stepped yet (a stage begun, or a run resumed, at the epoch's
                    # last step) is built at its epoch's factor: stepping the schedule first is what is meant
                    warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
                    state.scheduler.step()
        if context.is_main:
            last_path = save(checkpoint_dir / LAST)
            LOG.info("wrote %s (step %d)", last_path, state.step)
        context.barrier()
    finally:
        monitor.close()
    checksum = float(sum(p.detach().double().sum() for p in state.model.parameters()))
    metrics = run_metrics()
    return TrainResult(checkpoint=last_path, steps=state.step, losses=losses, parameter_checksum=checksum,
                       seconds=metrics[TRAIN_SECONDS], loss_first_10=metrics[LOSS_FIRST_10])
