"""What the readers of real footage share: a pinhole camera from a focal length or a field of view,
and choosing sequences by name.

Footage without calibration (DAVIS, videos) gets ``K`` from the focal length in pixels of the native
images, or from the horizontal field of view: ``f = (W / 2) / tan(fov / 2)``. Pixels are square
(``fy = fx``) and the principal point is the image centre in this project's pixel convention (pixel
centres at integer coordinates ``u = 0..W-1``): ``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from mds_core.data.sequence_folder import DataError, read_rgb

S = TypeVar("S")


def centred_intrinsics(size: tuple[int, int], focal: float | None, fov: float | None, what: str) -> np.ndarray:
    """The 3x3 ``K`` of ``size`` = ``(width, height)`` images from ``focal`` (pixels) or ``fov``
    (horizontal, degrees), principal point at the centre (module docstring).

    ``what`` names the footage in the :class:`DataError` raised when neither is given.
    """
    width, height = size
    if focal is None and fov is None:
        raise DataError(f"{what} has no calibration: give the focal length with --focal PIXELS or the horizontal "
                        f"field of view with --fov DEGREES (data.footage.focal / data.footage.fov)")
    if focal is not None and fov is not None:
        raise DataError("give the focal length (--focal) or the field of view (--fov), not both")
    if focal is None:
        if not 0 < float(fov) < 180:
            raise DataError(f"--fov must be in (0, 180) degrees, got {fov}")
        focal = 0.5 * width / math.tan(math.radians(float(fov)) / 2.0)
    if not (math.isfinite(focal) and focal > 0):
        raise DataError(f"--focal must be > 0 pixels, got {focal}")
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def select_by_name(found: Sequence[S], names: Sequence[str] | None, name_of: Callable[[S], str],
                   where: str) -> list[S]:
    """The items of ``found`` named in ``names``, in the order of ``names`` (all of them when
    ``names`` is empty); a name not found is a :class:`DataError` listing the names there are."""
    if not names:
        return list(found)
    by_name = {name_of(item): item for item in found}
    missing = [name for name in names if name not in by_name]
    if missing:
        known = ", ".join(sorted(by_name)) or "none"
        raise DataError(f"{where}: no sequence named {', '.join(missing)} (there are: {known})")
    return [by_name[name] for name in names]


class ImageFileSequence(ABC):
    """Frames read from a sorted list of image files, with one camera matrix for all of them: what the
    DAVIS and lidar-clip readers share. Subclasses set ``name`` and ``_images`` and implement
    :meth:`_camera_matrix` (computed once, from the first frame's size if needed), ``depth`` and ``motion``."""

    name: str
    _images: list[Path]
    _intrinsics: tuple[np.ndarray, tuple[int, int]] | None = None

    def __len__(self) -> int:
        return len(self._images)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} frames)"

    def frame_id(self, index: int) -> str:
        return self._images[index].stem

    def image(self, index: int) -> np.ndarray:
        return read_rgb(self._images[index])

    def intrinsics(self) -> tuple[np.ndarray, tuple[int, int]]:
        """``K`` (a copy) and ``(width, height)`` of the frames."""
        if self._intrinsics is None:
            height, width = self.image(0).shape[:2]
            self._intrinsics = (self._camera_matrix((width, height)), (width, height))
        matrix, size = self._intrinsics
        return matrix.copy(), size

    @abstractmethod
    def _camera_matrix(self, size: tuple[int, int]) -> np.ndarray:
        """``K`` of frames of ``size`` = ``(width, height)`` (from the reader's calibration or options)."""
