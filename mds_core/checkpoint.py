"""Checkpoints: atomic writes, safe loading (``weights_only``), exact resume.

A checkpoint is a plain dict of tensors, numbers, strings and lists -- no pickled classes --
so it loads with ``torch.load(weights_only=True)``. It carries the full :class:`TrainConfig`
(as plain data), the model, optimiser, scheduler and gradient-scaler states, the position in
training (step, epoch, batch within the epoch) and every random-number generator state.

Writes go to a temporary file in the same directory, are flushed to disk, then renamed over
the destination, so an interrupted save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mds_core.config import ConfigError, ModelConfig, TrainConfig, config_from_dict, config_to_dict

FORMAT = "mds-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or belongs to another architecture."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file."""

    config: TrainConfig
    model: dict[str, torch.Tensor]
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG the training loop touches, as weights-only-loadable data."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Atomically write ``checkpoint`` to ``path`` (creating parent directories)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config_to_dict(checkpoint.config),
        "model": checkpoint.model,
        "step": checkpoint.step,
        "epoch": checkpoint.epoch,
        "batch_in_epoch": checkpoint.batch_in_epoch,
        "optimizer": checkpoint.optimizer,
        "scheduler": checkpoint.scheduler,
        "scaler": checkpoint.scaler,
        "rng": checkpoint.rng,
        "metrics": checkpoint.metrics,
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint safely (no arbitrary unpickling) and validate its structure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} is corrupt or not an mds checkpoint: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mds checkpoint (no '{FORMAT}' marker)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('format_version')}, "
            f"this mds reads version {FORMAT_VERSION}"
        )
    try:
        config = config_from_dict(TrainConfig, payload["config"])
        config.validate()
    except (ConfigError, KeyError) as error:
        raise CheckpointError(f"{path} carries an invalid config: {error}") from error
    model = payload.get("model")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"{path} has no model state")
    return Checkpoint(
        config=config,
        model=model,
        step=int(payload.get("step", 0)),
        epoch=int(payload.get("epoch", 0)),
        batch_in_epoch=int(payload.get("batch_in_epoch", 0)),
        optimizer=payload.get("optimizer"),
        scheduler=payload.get("scheduler"),
        scaler=payload.get("scaler"),
        rng=payload.get("rng") or {},
        metrics=payload.get("metrics") or {},
    )


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], expected: ModelConfig,
                     found: ModelConfig, source: str) -> None:
    """Load weights, with a clear error when the checkpoint's architecture differs."""
    architecture = ("depth_encoder", "pose_mask_encoder", "num_components", "num_scales")
    differences = [
        f"{name}: checkpoint {getattr(found, name)!r} vs model {getattr(expected, name)!r}"
        for name in architecture
        if getattr(found, name) != getattr(expected, name)
    ]
    if differences:
        raise CheckpointError(f"{source} is a checkpoint of another architecture ({'; '.join(differences)})")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise CheckpointError(f"{source} does not match the model: {error}") from error
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{source} does not match the model: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
