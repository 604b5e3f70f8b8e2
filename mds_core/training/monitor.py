"""TensorBoard scalars and image panels for a training run (main process only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mds_core.data.sample import Batch
from mds_core.method.losses import LossOutput
from mds_core.method.model import ModelOutput
from mds_core.method.scene_flow import SceneFlowMotion
from mds_core.visualization import (
    colourise_depth,
    colourise_masks,
    colourise_moving_probability,
    panel,
    to_uint8_image,
)


def motion_image(output: ModelOutput, index: int = 0) -> np.ndarray:
    """The motion model's view of the first source: the K masks (components) or the motion mask
    at full resolution (scene flow; all static before its mask stage)."""
    motion = output.sources[0].motion
    if isinstance(motion, SceneFlowMotion):
        return colourise_moving_probability(motion.mask[0, index, 0].detach().float().cpu().numpy())
    return colourise_masks(motion.masks[index].detach().float().cpu().numpy())


def training_panel(batch: Batch, output: ModelOutput, loss: LossOutput, index: int = 0) -> np.ndarray:
    """image | depth | decomposition or motion mask (vs. the first source) | warped first source | loss map."""
    image = to_uint8_image(batch.target[index].detach().cpu().numpy())
    depth = colourise_depth(output.depth[index, 0].detach().float().cpu().numpy())
    masks = motion_image(output, index)
    warped = to_uint8_image(loss.warped_sources[index, 0].cpu().numpy())
    error = loss.per_pixel[index, 0].float().cpu().numpy()
    error = to_uint8_image(np.repeat((error / max(float(error.max()), 1e-6))[None], 3, axis=0))
    return panel([image, depth, masks, warped, error], columns=1,
                 labels=["image", "depth", "decomposition", "warped source", "photometric loss"])


class TrainingMonitor:
    """Writes scalars and panels to TensorBoard when enabled; otherwise does nothing."""

    def __init__(self, log_dir: Path, enabled: bool):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def image(self, name: str, image: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
