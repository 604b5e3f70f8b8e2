"""The paper's learning-rate schedule: constant, then x0.1 for the last epochs (1e-4 -> 1e-5)."""

from __future__ import annotations

import torch

from mds_core.config import OptimConfig
from mds_core.training.cpu import FlatViewAdam, is_channels_last_only


def learning_rate_factor(epoch: int, config: OptimConfig) -> float:
    decay_from = config.epochs - config.lr_decay_epochs
    return config.lr_decay_factor if epoch >= decay_from and config.lr_decay_epochs > 0 else 1.0


def build_optimizer(parameters, config: OptimConfig, learning_rate_factor: float = 1.0) -> torch.optim.Adam:
    """Adam with the fused kernel: one pass over all parameters (on CPU about 5x faster than the
    default per-parameter loop, which took about a tenth of a small model's training step), through
    flat views where weights are channels-last (:class:`~mds_core.training.cpu.FlatViewAdam`)."""
    parameters = list(parameters)
    adam = FlatViewAdam if any(is_channels_last_only(p) for p in parameters) else torch.optim.Adam
    return adam(parameters, lr=config.learning_rate * learning_rate_factor, betas=tuple(config.betas),
                eps=config.eps, fused=True)


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig,
                    epoch: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per epoch; ``epoch``: the epoch the run is in (a stage's fresh optimiser starts
    mid-run at the schedule's current factor)."""
    def factor(e: int) -> float:
        return learning_rate_factor(e, config)

    if epoch == 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=epoch - 1)
