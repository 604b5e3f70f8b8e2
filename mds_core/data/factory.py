"""Build datasets from a :class:`DataConfig`."""

from __future__ import annotations

import logging
from pathlib import Path

from mds_core.config import ConfigError, DataConfig, FootageConfig, ModelConfig
from mds_core.data.dataset import TripletDataset, remove_static_frames, valid_targets
from mds_core.data.footage import select_by_name
from mds_core.data.sequence_folder import DataError, FrameSequence, SequenceFolder, find_sequences

LOG = logging.getLogger(__name__)

#: The formats of sequence data on disk that every command reading sequences takes (``--format``).
SEQUENCE_FORMATS: tuple[str, ...] = ("folder", "kitti", "kitti_odometry", "davis", "video", "lidar_clips")
#: ... and those among them without calibration of their own: they take --focal or --fov.
UNCALIBRATED_FORMATS: tuple[str, ...] = ("davis", "video")


def check_footage_options(data_format: str, footage: FootageConfig) -> None:
    """Options that ``data_format`` has no use for are refused rather than ignored."""
    if data_format not in UNCALIBRATED_FORMATS and (footage.focal is not None or footage.fov is not None):
        raise ConfigError(f"--focal / --fov (data.footage.focal / fov) are for footage without calibration "
                          f"(--format {' or '.join(UNCALIBRATED_FORMATS)}); --format {data_format} has its own")
    if data_format != "video" and footage.fps is not None:
        raise ConfigError(f"--fps (data.footage.fps) subsamples videos (--format video), not --format {data_format}")
    if data_format != "kitti_odometry" and footage.camera:
        raise ConfigError(f"--camera (data.footage.camera) chooses a KITTI odometry camera (--format kitti_odometry), "
                          f"not one of --format {data_format}")


def open_sequences(data_format: str, root: str | Path, footage: FootageConfig | None = None) -> list[FrameSequence]:
    """Every sequence of ``root`` in ``data_format`` (one of :data:`SEQUENCE_FORMATS`), those named in
    ``footage.sequences`` only when given (KITTI raw: drive folder names, e.g. 2011_09_26_drive_0001_sync)."""
    footage = footage or FootageConfig()
    footage.validate()
    check_footage_options(data_format, footage)
    names = footage.sequences
    if not str(root):
        raise DataError("no data root given (data.root / --data)")
    if data_format == "folder":
        return select_by_name(find_sequences(root), names, lambda s: s.name, str(root))
    if data_format == "kitti":
        from mds_core.data.kitti import KittiSequence, find_kitti_drives

        drives = select_by_name(find_kitti_drives(root), names, lambda d: d.split("/")[-1], str(root))
        return [KittiSequence(root, drive, "l") for drive in drives]
    if data_format == "kitti_odometry":
        from mds_core.data.kitti_odometry import find_kitti_odometry_sequences

        return list(find_kitti_odometry_sequences(root, names, footage.camera))
    if data_format == "davis":
        from mds_core.data.davis import find_davis_sequences

        return list(find_davis_sequences(root, names, footage.focal, footage.fov))
    if data_format == "video":
        from mds_core.data.video import find_video_sequences

        return list(find_video_sequences(root, names, footage.focal, footage.fov, footage.fps))
    if data_format == "lidar_clips":
        from mds_core.data.lidar_clips import find_lidar_clips

        return list(find_lidar_clips(root, names))
    raise ConfigError(f"unknown data format {data_format!r} (one of {', '.join(SEQUENCE_FORMATS)})")


def open_sequence(data_format: str, path: str | Path, footage: FootageConfig | None = None) -> FrameSequence:
    """The one sequence at ``path`` (``mds infer``, ``mds odometry``): a sequence folder itself for
    ``folder``; for the other formats, the only sequence found there or the one ``footage.sequences`` names."""
    if data_format == "folder" and not (footage and footage.sequences):
        check_footage_options(data_format, footage or FootageConfig())
        return SequenceFolder(Path(path))
    sequences = open_sequences(data_format, path, footage)
    if len(sequences) > 1:
        names = ", ".join(s.name for s in sequences[:10]) + (", ..." if len(sequences) > 10 else "")
        raise DataError(f"{path} holds {len(sequences)} sequences ({names}): choose one with --sequence NAME")
    return sequences[0]


def build_dataset(data: DataConfig, model: ModelConfig, *, seed: int = 0, training: bool = True,
                  split: str | None = None) -> TripletDataset:
    """Training (augmented) or evaluation (ground truth loaded) samples.

    Training samples carry ground truth too when ``model.depth_source`` or ``model.moving_pixels_source`` is
    ``"ground_truth"``.

    ``split`` overrides ``data.split`` (e.g. a test split file for KITTI evaluation).
    """
    split = split if split is not None else data.split
    if data.format != "rosbag":
        check_footage_options(data.format, data.footage)
    if data.format == "rosbag":
        from mds_core.data.rosbag import load_bag_sequences

        sequences, _, _ = load_bag_sequences(data.bag, model.height, model.width, data.source_offsets)
        targets = valid_targets(sequences, data.source_offsets)
    elif not data.root:
        raise DataError("no data root given (data.root / --data)")
    elif data.format == "kitti" and (split or not data.footage.sequences):
        from mds_core.data.kitti import kitti_sequences_and_targets

        sequences, targets = kitti_sequences_and_targets(data.root, split, data.source_offsets)
    else:
        sequences = open_sequences(data.format, data.root, data.footage)
        targets = valid_targets(sequences, data.source_offsets)
    if not targets:
        raise DataError(
            f"{data.describe()}: no frame has all its source frames {data.source_offsets} "
            f"(sequences are too short)"
        )
    if training and data.static_threshold > 0:
        targets, dropped = remove_static_frames(sequences, targets, data.source_offsets, data.static_threshold,
                                                data.static_keep)
        LOG.info("static-frame removal dropped %d of %d targets (the first %d of each static run kept)", dropped,
                 dropped + len(targets), data.static_keep)
        if not targets:
            raise DataError(f"every frame in {data.describe()} was removed as static (data.static_threshold)")
    return TripletDataset(
        sequences,
        targets,
        data.source_offsets,
        model.height,
        model.width,
        augmentation=data.augmentation if training else None,
        # the oracle rungs "depth" and "movers" train on the ground-truth depth (mds_core.method.oracle) and labels
        load_ground_truth=not training or model.depth_source == "ground_truth" or model.moving_pixels_source != "evidence",
        # the oracle rung "motion" warps with the scene's true motions (mds_core.method.true_motion)
        load_true_motion=training and model.motion_source != "network",
        seed=seed,
    )
