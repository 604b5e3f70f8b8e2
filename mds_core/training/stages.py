"""Staged training: which networks learn, and which parts of the motion model act, step by step.

A run's steps are split into stages (``TrainConfig.stages``, by default
:data:`mds_core.config.SCENE_FLOW_STAGES` for the scene-flow model and one stage for the
components model). Entering a stage (:func:`mds_core.training.loop.enter_stage`, with
:func:`apply_stage` here):

* freezes the network groups the stage does not train: no gradient (``requires_grad`` off) and
  batch-norm statistics fixed (those modules run in eval mode), so their weights and buffers do
  not change at all;
* starts a fresh Adam over the trained parameters at ``optim.learning_rate`` times the stage's
  factor (and a fresh epoch schedule, at the current epoch);
* switches the scene-flow model's flow and mask on or off.

A stage is entered at the step it starts, before the step runs, and a checkpoint always holds the
optimiser of the stage of its step, so that resuming is exact across a stage boundary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from mds_core.config import SCENE_FLOW_STAGES, StageConfig, TrainConfig
from mds_core.method.dynamo_depth import DynamoDepth
from mds_core.method.motion_models import MotionModel

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """A stage with its place in the run: steps ``start <= step < end``."""

    config: StageConfig
    start: int
    end: int

    @property
    def name(self) -> str:
        return self.config.name

    def trains(self, group: str) -> bool:
        return group in self.config.train


def stage_configs(config: TrainConfig) -> list[StageConfig]:
    """The configured stages, or the motion model's default."""
    if config.stages is not None and config.stages:
        return list(config.stages)
    if config.stages is None and config.model.motion_model == "scene_flow":
        return list(SCENE_FLOW_STAGES)
    return [StageConfig()]


def training_stages(config: TrainConfig, total_steps: int) -> list[Stage]:
    """The stages over ``total_steps`` steps, in proportion to their fractions (each at least one
    step while steps last; the last ends at ``total_steps``)."""
    configs = stage_configs(config)
    total_fraction = sum(c.fraction for c in configs)
    stages, start, cumulative = [], 0, 0.0
    for index, stage in enumerate(configs):
        cumulative += stage.fraction
        end = total_steps if index == len(configs) - 1 else round(total_steps * cumulative / total_fraction)
        end = min(total_steps, max(end, start + 1))
        stages.append(Stage(stage, start, end))
        start = end
    return stages


def stage_at(stages: list[Stage], step: int) -> Stage:
    """The stage that runs ``step`` (the last one past the end)."""
    for stage in stages:
        if stage.start <= step < stage.end:
            return stage
    return stages[-1]


def network_groups(model: MotionModel) -> dict[str, list[nn.Module]]:
    """The modules of each network group (a module may belong to two groups: the scene-flow encoder
    is the flow's and the mask's)."""
    depth = [model.depth_net] if model.depth_net is not None else []
    if isinstance(model, DynamoDepth):
        flow_net = model.scene_flow_net
        return {"depth": depth, "pose": [model.ego_pose_net], "flow": [flow_net.encoder, flow_net.flow_decoder],
                "mask": [flow_net.encoder, flow_net.mask_decoder]}
    return {"depth": depth, "pose": [model.pose_mask_net], "flow": [], "mask": []}


def trained_modules(model: MotionModel, stage: Stage) -> list[nn.Module]:
    groups = network_groups(model)
    modules: list[nn.Module] = []
    for group in stage.config.train:
        modules += [m for m in groups[group] if all(m is not other for other in modules)]
    return modules


def frozen_modules(model: MotionModel, stage: Stage) -> list[nn.Module]:
    trained = trained_modules(model, stage)
    return [m for modules in network_groups(model).values() for m in modules
            if all(m is not t for t in trained)]


def apply_stage(model: MotionModel, stage: Stage) -> None:
    """Freeze what the stage does not train and switch the motion model's parts (not the optimiser)."""
    trained = trained_modules(model, stage)
    for module in frozen_modules(model, stage):
        module.requires_grad_(False)
    for module in trained:
        module.requires_grad_(True)
    if isinstance(model, DynamoDepth):
        model.flow_enabled, model.mask_enabled = stage.config.flow, stage.config.mask


def set_training_modes(model: MotionModel, stage: Stage) -> None:
    """``model.train()`` except for the frozen groups, whose batch-norm statistics stay fixed."""
    model.train()
    for module in frozen_modules(model, stage):
        module.eval()
