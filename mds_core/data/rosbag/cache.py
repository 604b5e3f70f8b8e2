"""Decoded frames at the model resolution, in RAM up to a budget and in a disk file beyond it.

Frames are appended once, while a bag is prepared, and only read afterwards: training never
decodes a bag message twice. The first ``memory_mb`` worth of frames are kept as numpy arrays;
the rest are appended to ``frames.u8`` (raw ``(H, W, 3)`` uint8, one after the other) in a
private directory under ``directory`` (default: the system's temporary directory) and read
through a read-only memory map. The kernel's page cache keeps the hot part of that file in RAM
and gives it back under memory pressure, so a bag larger than RAM still trains. The directory
is deleted when the cache is garbage collected or the process exits (never by a forked data
loader worker).

The cache pickles without its memory map (it is reopened by path), so data loader workers
started by ``spawn`` share the file; with ``fork`` (Linux) the RAM part is shared copy-on-write.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from mds_core.data.sequence_folder import DataError


def _remove_directory(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)


class FrameCache:
    """Append-only store of ``(height, width, 3)`` uint8 frames (module docstring)."""

    def __init__(self, height: int, width: int, memory_mb: float, directory: str | Path = ""):
        self.shape = (int(height), int(width), 3)
        self.frame_bytes = int(np.prod(self.shape))
        self.memory_capacity = int(memory_mb * 2**20) // self.frame_bytes
        self.directory = str(directory)
        self._memory: list[np.ndarray] = []
        self._disk_frames = 0
        self._disk_path: Path | None = None
        self._writer = None
        self._map: np.ndarray | None = None
        self._finalizer = None

    def __len__(self) -> int:
        return len(self._memory) + self._disk_frames

    @property
    def memory_frames(self) -> int:
        return len(self._memory)

    @property
    def disk_frames(self) -> int:
        return self._disk_frames

    @property
    def disk_path(self) -> Path | None:
        return self._disk_path

    def _open_disk(self) -> None:
        base = self.directory or None
        try:
            if base is not None:
                Path(base).mkdir(parents=True, exist_ok=True)
            folder = tempfile.mkdtemp(prefix="mds-frame-cache-", dir=base)
        except OSError as error:
            raise DataError(f"cannot create the frame cache in {base or tempfile.gettempdir()}: {error} "
                            f"(set data.bag.cache_dir)") from error
        self._finalizer = weakref.finalize(self, _remove_directory, folder, os.getpid())
        self._disk_path = Path(folder) / "frames.u8"
        self._writer = self._disk_path.open("wb")

    def append(self, frame: np.ndarray) -> int:
        """Store ``frame`` (copied); returns its index."""
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(f"frame cache holds {self.shape} uint8 frames, got {frame.shape} {frame.dtype}")
        index = len(self)
        if len(self._memory) < self.memory_capacity:
            self._memory.append(np.array(frame, copy=True))
            return index
        if self._writer is None:
            self._open_disk()
        try:
            self._writer.write(np.ascontiguousarray(frame).tobytes())
        except OSError as error:
            raise DataError(f"cannot write the frame cache {self._disk_path}: {error} "
                            f"(free space there or set data.bag.cache_dir)") from error
        self._disk_frames += 1
        return index

    def _disk_view(self, needed: int) -> np.ndarray:
        if self._map is None or len(self._map) < needed:
            if self._writer is not None:
                self._writer.flush()
            self._map = np.memmap(self._disk_path, dtype=np.uint8, mode="r",
                                  shape=(self._disk_frames, *self.shape))
        return self._map

    def __getitem__(self, index: int) -> np.ndarray:
        """Frame ``index`` (read-only for frames on disk; do not modify)."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} not in a cache of {len(self)}")
        if index < len(self._memory):
            return self._memory[index]
        offset = index - len(self._memory)
        return self._disk_view(offset + 1)[offset]

    def finish(self) -> None:
        """Close the writer (appending is over)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def describe(self) -> str:
        mb = 2**20
        text = f"{len(self._memory)} frames in RAM ({len(self._memory) * self.frame_bytes / mb:.0f} MB)"
        if self._disk_frames:
            text += f", {self._disk_frames} on disk ({self._disk_frames * self.frame_bytes / mb:.0f} MB in {self._disk_path})"
        return text

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_writer"] = None
        state["_map"] = None
        state["_finalizer"] = None  # only the creating process removes the directory
        return state
