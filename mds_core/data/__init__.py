"""Data: sequence folders, KITTI raw, augmentation and typed samples."""

from mds_core.data.dataset import TargetFrame, TripletDataset, remove_static_frames, valid_targets
from mds_core.data.sample import Batch, Sample, collate_samples
from mds_core.data.sequence_folder import DataError, FrameSequence, SequenceFolder, find_sequences

__all__ = [
    "Batch",
    "DataError",
    "FrameSequence",
    "Sample",
    "SequenceFolder",
    "TargetFrame",
    "TripletDataset",
    "collate_samples",
    "find_sequences",
    "remove_static_frames",
    "valid_targets",
]
