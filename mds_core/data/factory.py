"""Build datasets from a :class:`DataConfig`."""

from __future__ import annotations

import logging

from mds_core.config import DataConfig, ModelConfig
from mds_core.data.dataset import TripletDataset, remove_static_frames, valid_targets
from mds_core.data.sequence_folder import DataError, find_sequences

LOG = logging.getLogger(__name__)


def build_dataset(data: DataConfig, model: ModelConfig, *, seed: int = 0, training: bool = True,
                  split: str | None = None) -> TripletDataset:
    """Training (augmented) or evaluation (ground truth loaded) samples.

    Training samples carry ground truth too when ``model.depth_source`` is ``"ground_truth"``.

    ``split`` overrides ``data.split`` (e.g. a test split file for KITTI evaluation).
    """
    split = split if split is not None else data.split
    if data.format == "rosbag":
        from mds_core.data.rosbag import load_bag_sequences

        sequences, _, _ = load_bag_sequences(data.bag, model.height, model.width, data.source_offsets)
        targets = valid_targets(sequences, data.source_offsets)
    elif not data.root:
        raise DataError("no data root given (data.root / --data)")
    elif data.format == "kitti":
        from mds_core.data.kitti import kitti_sequences_and_targets

        sequences, targets = kitti_sequences_and_targets(data.root, split, data.source_offsets)
    else:
        sequences = find_sequences(data.root)
        targets = valid_targets(sequences, data.source_offsets)
    if not targets:
        raise DataError(
            f"{data.describe()}: no frame has all its source frames {data.source_offsets} "
            f"(sequences are too short)"
        )
    if training and data.static_threshold > 0:
        targets, dropped = remove_static_frames(sequences, targets, data.source_offsets, data.static_threshold)
        LOG.info("static-frame removal dropped %d of %d targets", dropped, dropped + len(targets))
        if not targets:
            raise DataError(f"every frame in {data.describe()} was removed as static (data.static_threshold)")
    return TripletDataset(
        sequences,
        targets,
        data.source_offsets,
        model.height,
        model.width,
        augmentation=data.augmentation if training else None,
        # the oracle rung "depth" trains on the ground-truth depth (mds_core.method.oracle)
        load_ground_truth=not training or model.depth_source == "ground_truth",
        seed=seed,
    )
