"""A :class:`~mds_core.data.sequence_folder.FrameSequence` over frames cached from a bag.

Its frames are already at the training resolution (the cache holds them so), so its
``intrinsics()`` are those of the training resolution too and
:class:`~mds_core.data.dataset.TripletDataset` resizes nothing. Frame ids are the header
stamps, ``<sec>.<nanosec>``.
"""

from __future__ import annotations

import numpy as np

from mds_core.data.rosbag.cache import FrameCache
from mds_core.data.rosbag.camera import Undistorter


class BagSequence:
    """Consecutive kept frames of one bag: no gap over ``max_gap``, one camera, one size."""

    def __init__(self, name: str, cache: FrameCache, indices: list[int], stamps_ns: list[int],
                 matrix: np.ndarray, undistort: Undistorter | None = None):
        self.name = name
        self.cache = cache
        self.indices = np.asarray(indices, dtype=np.int64)
        self.stamps_ns = np.asarray(stamps_ns, dtype=np.int64)
        self.matrix = np.asarray(matrix, dtype=np.float64)
        self.undistort = undistort

    def __len__(self) -> int:
        return len(self.indices)

    def frame_id(self, index: int) -> str:
        stamp = int(self.stamps_ns[index])
        return f"{stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d}"

    def stamp(self, index: int) -> float:
        """Header stamp of frame ``index`` in seconds."""
        return int(self.stamps_ns[index]) / 1e9

    def image(self, index: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB at the training resolution (a copy: the cache stays intact)."""
        frame = self.cache[int(self.indices[index])]
        return self.undistort(frame) if self.undistort is not None else np.array(frame, copy=True)

    def intrinsics(self) -> tuple[np.ndarray, tuple[int, int]]:
        height, width = self.cache.shape[:2]
        return self.matrix.copy(), (width, height)

    def depth(self, index: int) -> np.ndarray | None:
        return None

    def motion(self, index: int) -> np.ndarray | None:
        return None
