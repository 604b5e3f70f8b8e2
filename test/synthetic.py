"""Tiny generated data sets for tests (written once per session into a temp dir)."""

from __future__ import annotations

from pathlib import Path

from mds_core.config import ModelConfig, TrainConfig
from mds_core.synth import SynthConfig, write_sequence_folder

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
    return config
