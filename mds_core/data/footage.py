"""What the readers of real footage share: a pinhole camera from a focal length or a field of view,
and choosing sequences by name.

Footage without calibration (DAVIS, videos) gets ``K`` from the focal length in pixels of the native
images, or from the horizontal field of view: ``f = (W / 2) / tan(fov / 2)``. Pixels are square
(``fy = fx``) and the principal point is the image centre in this project's pixel convention (pixel
centres at integer coordinates ``u = 0..W-1``): ``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from mds_core.data.sequence_folder import DataError

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
