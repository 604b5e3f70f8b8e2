"""Training and held-out sequence sets for experiments (``mds demo``, ``mds accuracy``).

:func:`write_train_heldout` writes ``ROOT/train/train_ii`` (seeds ``seed + i``) and
``ROOT/heldout/heldout_ii`` (seeds ``seed + 1000 + i``), so the held-out scenes never share a
layout with the training scenes as long as there are fewer than 1000 training sequences.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mds_core.tools.synth.config import SCENES, SynthConfig
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
                        heldout_sequences: int, heldout_frames: int, seed: int = 0, scene: str = "road",
                        on_frame: FrameCallback | None = None) -> TrainHeldoutSplit:
    """Generate the training and held-out sequence folders under ``root`` (replacing them), of the
    kind of scene ``scene`` (:data:`~mds_core.tools.synth.config.SCENES`).

    ``on_frame`` is called after every written frame (e.g. a progress bar update).
    """
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {sorted(SCENES)}, got {scene!r}")
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
            width=width, height=height, num_frames=train_frames, seed=seed + i, **SCENES[scene]), on_frame=on_frame)
        for i in range(train_sequences)
    ]
    written_heldout = [
        write_sequence_folder(heldout, f"heldout_{i:02d}", SynthConfig(
            width=width, height=height, num_frames=heldout_frames, seed=seed + HELDOUT_SEED_OFFSET + i,
            **_heldout_scene(scene, i)), on_frame=on_frame)
        for i in range(heldout_sequences)
    ]
    return TrainHeldoutSplit(train, heldout, written_train, written_heldout)


def _heldout_scene(scene: str, index: int) -> dict:
    """The held-out drives of a scene whose drives may stop: every second one stops, so that the scores
    of a camera standing still never depend on a seed's draw."""
    fields = dict(SCENES[scene])
    if fields.get("camera_stop_probability", 0.0) > 0:
        fields["camera_stop_probability"] = float(index % 2)
    return fields
