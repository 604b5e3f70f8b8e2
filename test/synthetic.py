"""Tiny generated data sets for tests (written once per session into a temp dir)."""

from __future__ import annotations

from pathlib import Path

import torch

from mds_core.config import ModelConfig, TrainConfig
from mds_core.tools.synth import SynthConfig, write_sequence_folder

WIDTH, HEIGHT = 96, 64


def make_sequences(root: Path, count: int = 1, frames: int = 6, width: int = WIDTH, height: int = HEIGHT) -> Path:
    for i in range(count):
        if not (root / f"seq{i}").exists():
            write_sequence_folder(root, f"seq{i}", SynthConfig(width=width, height=height, num_frames=frames, seed=i + 1))
    return root


def tiny_config(data_root: Path, output: Path, components: int = 2, **optim) -> TrainConfig:
    config = TrainConfig()
    config.model = ModelConfig(height=HEIGHT, width=WIDTH, depth_encoder="resnet18",
                               pose_mask_encoder="resnet18", num_components=components)
    config.data.root = str(data_root)
    config.output_dir = str(output)
    config.device = "cpu"
    config.optim.batch_size = 2
    for key, value in optim.items():
        setattr(config.optim, key, value)
    config.logging.progress = False
    config.logging.tensorboard = False
    # tests train for a few steps: the components and auto-masking act from the first one
    # (the warm-ups have tests of their own)
    config.decomposition.warmup_steps = 0
    config.loss.automask_start_step = 0
    return config


def use_published_objective(config: TrainConfig) -> TrainConfig:
    """The paper's formulation alone (eq. 9, K independent motions): the loss-drop tests train 20
    steps, in which the assignment terms pull the masks towards their targets at the photometric
    loss's expense."""
    config.model.motion_hypotheses = []
    config.loss.assigned_reprojection_weight = config.loss.mask_assignment_weight = 0.0
    return config


#: Learning rate of the loss-drop tests. At 1e-3 Adam's first steps amplify the last-bit differences of
#: the CPU's kernels: the loss after 20 steps was 0.64x to 0.80x of the first depending on the kernel set
#: (ATEN_CPU_CAPABILITY) and thread count. At 1e-4 it is 0.707x (+-0.0003) under every one of them.
LOSS_DROP_LEARNING_RATE = 1e-4


def photometric_before_and_after(config: TrainConfig, batch, steps: int = 20) -> tuple[float, float]:
    """The photometric loss of ``batch`` before and after ``steps`` training steps on it (CPU)."""
    import torch

    from mds_core.method.losses import SelfSupervisedObjective
    from mds_core.training.distributed import DistributedContext
    from mds_core.training.loop import build_training_state, train_step

    state = build_training_state(config, torch.device("cpu"), DistributedContext())
    objective = SelfSupervisedObjective(config.loss, config.model)

    def photometric() -> float:
        # batch statistics, as in training: after a few steps the batch-norm running statistics are
        # still far from them, and an eval-mode loss would measure that instead of the learning
        state.network.train()
        with torch.no_grad():
            return float(objective(batch, state.network(batch.network_images, config.data.source_offsets)).photometric)

    before = photometric()
    for _ in range(steps):
        train_step(state, objective, batch)
    return before, photometric()


def kitti_like_intrinsics(width: int, height: int, batch: int = 1) -> torch.Tensor:
    k = torch.tensor([[0.58 * width, 0.0, 0.5 * width], [0.0, 1.92 * height, 0.5 * height], [0.0, 0.0, 1.0]])
    return k.expand(batch, 3, 3).clone()


def textured_image(height: int, width: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A smooth random texture in [0, 1] (low-pass noise), (B, 3, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(2, height // 4), max(2, width // 4), generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)


def truncate_storage(bag: Path, fraction: float) -> Path:
    """Cut the storage file of a one-file rosbag2 to ``fraction`` of its bytes (a recording cut short)."""
    (storage_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[: int(len(data) * fraction)])
    return storage_file
