"""Training and held-out sequence sets for experiments (``mds demo``, ``mds accuracy``).

:func:`write_train_heldout` writes ``ROOT/train/train_ii`` (seeds ``seed + i``) and
``ROOT/heldout/heldout_ii`` (seeds ``seed + 1000 + i``), so the held-out scenes never share a
layout with the training scenes as long as there are fewer than 1000 training sequences.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mds_core.tools.synth.config import SynthConfig
from mds_core.tools.synth.writers import FrameCallback, write_sequence_folder

HELDOUT_SEED_OFFSET = 1000


@dataclass(frozen=True)
class TrainHeldoutSplit:
    """Where :func:`write_train_heldout` put the sequences."""

    train: Path
    heldout: Path
    train_sequences: list[Path]
    heldout_sequences: list[Path]


def write_train_heldout(root: str | Path, *, width: int, height: int, train_sequences: int, train_frames: int,
                        heldout_sequences: int, heldout_frames: int, seed: int = 0,
                        on_frame: FrameCallback | None = None) -> TrainHeldoutSplit:
    """Generate the training and held-out sequence folders under ``root`` (replacing them).

    ``on_frame`` is called after every written frame (e.g. a progress bar update).
    """
    if train_sequences < 1 or heldout_sequences < 1:
        raise ValueError("need at least one training and one held-out sequence")
    if train_sequences > HELDOUT_SEED_OFFSET:
        raise ValueError(f"at most {HELDOUT_SEED_OFFSET} training sequences (their seeds would reach the held-out ones)")
    root = Path(root)
    train, heldout = root / "train", root / "heldout"
    for directory in (train, heldout):
        if directory.exists():
            shutil.rmtree(directory)
    written_train = [
        write_sequence_folder(train, f"train_{i:02d}", SynthConfig(
            width=width, height=height, num_frames=train_frames, seed=seed + i), on_frame=on_frame)
        for i in range(train_sequences)
    ]
    written_heldout = [
        write_sequence_folder(heldout, f"heldout_{i:02d}", SynthConfig(
            width=width, height=height, num_frames=heldout_frames, seed=seed + HELDOUT_SEED_OFFSET + i),
            on_frame=on_frame)
        for i in range(heldout_sequences)
    ]
    return TrainHeldoutSplit(train, heldout, written_train, written_heldout)
