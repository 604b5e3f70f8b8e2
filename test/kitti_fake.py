"""A tiny fake KITTI raw tree in the real layout, with analytically known velodyne ground truth.

Calibration files have the keys and number format of the real ones (values of 2011_09_26 scaled
to the small image size). Each velodyne scan of frame ``f`` holds:

* one point per pixel ``(u, v)`` of :func:`fake_grid_pixels` whose projection through the left
  camera (``P_rect_02 @ R_rect_00 @ velo_to_cam``) lands exactly on ``(u + 1, v + 1)`` (so that
  Monodepth2's ``round(.) - 1`` convention puts it on ``(u, v)``) at depth
  :func:`fake_plane_depth` ``(f)`` (a fronto-parallel plane);
* a second point behind each of those at depth ``+ FAR_OFFSET`` landing on the same pixel
  (the nearest one must win);
* points behind the sensor (velodyne ``x < 0``) and points projecting outside the image (both
  must be ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

DATE = "2011_09_26"
DEFAULT_DRIVES = (f"{DATE}_drive_0001_sync", f"{DATE}_drive_0002_sync")
FAR_OFFSET = 5.0
REAL_WIDTH, REAL_HEIGHT = 1242, 375

# Real 2011_09_26 values (the scale-dependent ones are rescaled in fake_calibration).
_R_RECT_00 = np.array(
    [9.999239e-01, 9.837760e-03, -7.445048e-03, -9.869795e-03, 9.999421e-01, -4.278459e-03,
     7.402527e-03, 4.351614e-03, 9.999631e-01]
).reshape(3, 3)
_VELO_R = np.array(
    [7.533745e-03, -9.999714e-01, -6.166020e-04, 1.480249e-02, 7.280733e-04, -9.998902e-01,
     9.998621e-01, 7.523790e-03, 1.480755e-02]
).reshape(3, 3)
_VELO_T = np.array([-4.069766e-03, -7.631618e-02, -2.717806e-01])
_P_RECT = {
    0: [7.215377e02, 0, 6.095593e02, 0, 0, 7.215377e02, 1.728540e02, 0, 0, 0, 1, 0],
    1: [7.215377e02, 0, 6.095593e02, -3.875744e02, 0, 7.215377e02, 1.728540e02, 0, 0, 0, 1, 0],
    2: [7.215377e02, 0, 6.095593e02, 4.485728e01, 0, 7.215377e02, 1.728540e02, 2.163791e-01,
        0, 0, 1, 2.745884e-03],
    3: [7.215377e02, 0, 6.095593e02, -3.395242e02, 0, 7.215377e02, 1.728540e02, 2.199936e00,
        0, 0, 1, 2.729905e-03],
}


def _fmt(values: np.ndarray | Sequence[float]) -> str:
    return " ".join(f"{float(v):e}" for v in np.ravel(values))


def _as_written(values: np.ndarray) -> np.ndarray:
    """``values`` rounded as the ``%e`` text of the calibration files stores them."""
    return np.vectorize(lambda v: float(f"{v:e}"))(values)


def fake_calibration(size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The fake rectified calibration for images of ``size = (W, H)``:
    ``P_rect_0c`` (3x4) for c = 0..3, ``R_rect_00`` and ``velo_to_cam`` (4x4)."""
    sx, sy = size[0] / REAL_WIDTH, size[1] / REAL_HEIGHT
    result: dict[str, np.ndarray] = {}
    for camera, values in _P_RECT.items():
        p = np.array(values, dtype=np.float64).reshape(3, 4)
        p[0] *= sx
        p[1] *= sy
        result[f"P_rect_0{camera}"] = _as_written(p)
    result["R_rect_00"] = _R_RECT_00.copy()
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :3] = _VELO_R
    velo_to_cam[:3, 3] = _VELO_T
    result["velo_to_cam"] = velo_to_cam
    return result


def cam_to_cam_text(size: tuple[int, int], include_s_rect: bool = True) -> str:
    """``calib_cam_to_cam.txt`` content in the real format."""
    calib = fake_calibration(size)
    lines = ["calib_time: 09-Jan-2012 13:57:47", "corner_dist: 9.950000e-02"]
    for camera in range(4):
        k = calib[f"P_rect_0{camera}"][:, :3].copy()
        lines += [
            f"S_0{camera}: {_fmt([size[0] * 1.12, size[1] * 1.37])}",
            f"K_0{camera}: {_fmt(k)}",
            f"D_0{camera}: {_fmt([-3.728755e-01, 2.037299e-01, 2.219027e-03, 1.383707e-03, -7.233722e-02])}",
            f"R_0{camera}: {_fmt(np.eye(3))}",
            f"T_0{camera}: {_fmt([-0.54 if camera % 2 else 0.0, 0.0, 0.0])}",
        ]
        if include_s_rect:
            lines.append(f"S_rect_0{camera}: {_fmt(size)}")
        lines += [
            f"R_rect_0{camera}: {_fmt(calib['R_rect_00'] if camera == 0 else np.eye(3))}",
            f"P_rect_0{camera}: {_fmt(calib[f'P_rect_0{camera}'])}",
        ]
    return "\n".join(lines) + "\n"


def velo_to_cam_text() -> str:
    return (
        "calib_time: 15-Mar-2012 11:37:16\n"
        f"R: {_fmt(_VELO_R)}\n"
        f"T: {_fmt(_VELO_T)}\n"
        "delta_f: 0.000000e+00 0.000000e+00\n"
        "delta_c: 0.000000e+00 0.000000e+00\n"
    )


def imu_to_velo_text() -> str:
    return (
        "calib_time: 25-May-2012 16:47:16\n"
        "R: 9.999976e-01 7.553071e-04 -2.035826e-03 -7.854027e-04 9.998898e-01 -1.482298e-02 "
        "2.024406e-03 1.482454e-02 9.998881e-01\n"
        "T: -8.086759e-01 3.195559e-01 -7.997231e-01\n"
    )


def fake_plane_depth(frame: int) -> float:
    """Depth (metres, along the rectified left camera's axis) of frame ``frame``'s plane."""
    return 4.0 + 1.5 * frame


def fake_grid_pixels(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(u, v)`` integer pixel arrays that receive a point (every other column and row,
    starting at 1 so that ``round(.)`` stays inside the image)."""
    us, vs = np.meshgrid(np.arange(1, size[0] - 1, 2), np.arange(1, size[1] - 1, 2))
    return us.ravel(), vs.ravel()


def _velodyne_points_for_pixels(
    calib: dict[str, np.ndarray], u: np.ndarray, v: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """Velodyne-frame points whose left-camera projection is ``(u, v)`` at ``depth``."""
    p = calib["P_rect_02"]
    homogeneous = np.stack([u * depth, v * depth, depth])
    rectified = np.linalg.solve(p[:, :3], homogeneous - p[:, 3:4])
    camera = calib["R_rect_00"].T @ rectified
    velo = np.linalg.inv(calib["velo_to_cam"]) @ np.vstack([camera, np.ones(len(u))])
    return velo[:3].T


def fake_scan(size: tuple[int, int], frame: int) -> np.ndarray:
    """The ``(N, 4)`` float32 velodyne scan of ``frame`` (see the module docstring)."""
    calib = fake_calibration(size)
    u, v = fake_grid_pixels(size)
    d = np.full(u.shape, fake_plane_depth(frame))
    # Monodepth2's convention: pixel = round(x) - 1, so aim at x = u + 1.
    near = _velodyne_points_for_pixels(calib, u + 1.0, v + 1.0, d)
    far = _velodyne_points_for_pixels(calib, u + 1.0, v + 1.0, d + FAR_OFFSET)
    behind = near.copy()
    behind[:, 0] = -behind[:, 0] - 1.0
    outside = _velodyne_points_for_pixels(
        calib, np.array([-20.0, size[0] + 20.0, 5.0]), np.array([5.0, 5.0, size[1] + 20.0]), np.full(3, 7.0)
    )
    # Far points first so that "last write wins" would get it wrong.
    xyz = np.concatenate([far, behind, outside, near])
    reflectance = np.full((len(xyz), 1), 0.3)
    return np.concatenate([xyz, reflectance], axis=1).astype(np.float32)


def fake_image(size: tuple[int, int], frame: int, camera: int) -> np.ndarray:
    """A deterministic ``(H, W, 3)`` uint8 RGB test image."""
    w, h = size
    x = np.arange(w)[None, :]
    y = np.arange(h)[:, None]
    red = (x * 7 + frame * 13) % 256 + 0 * y
    green = (y * 11 + camera * 40) % 256 + 0 * x
    blue = ((x + y) * 5 + frame * 29) % 256
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def write_split(path: Path, entries: Sequence[tuple[str, int, str]]) -> Path:
    """Write ``(folder, frame, side)`` entries as a split file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{folder} {frame} {side}\n" for folder, frame, side in entries))
    return path


def make_fake_kitti(
    root: Path,
    drives: Sequence[str] = DEFAULT_DRIVES,
    frames: int | Sequence[int] = 5,
    size: tuple[int, int] = (124, 38),
    image_ext: str = ".png",
    with_velodyne: bool = True,
    include_s_rect: bool = True,
) -> Path:
    """Create ``root/<date>/...`` (dates taken from the drive names' first 10 characters) and
    ``root/splits/all_files.txt`` (every frame, left camera). Returns ``root``.

    ``frames`` is a count for every drive or one count per drive; ``size`` is ``(W, H)``.
    """
    root = Path(root)
    counts = [frames] * len(drives) if isinstance(frames, int) else list(frames)
    entries: list[tuple[str, int, str]] = []
    for drive, count in zip(drives, counts, strict=True):
        date_dir = root / drive[:10]
        date_dir.mkdir(parents=True, exist_ok=True)
        (date_dir / "calib_cam_to_cam.txt").write_text(cam_to_cam_text(size, include_s_rect))
        (date_dir / "calib_velo_to_cam.txt").write_text(velo_to_cam_text())
        (date_dir / "calib_imu_to_velo.txt").write_text(imu_to_velo_text())
        drive_dir = date_dir / drive
        for camera in (2, 3):
            image_dir = drive_dir / f"image_0{camera}" / "data"
            image_dir.mkdir(parents=True, exist_ok=True)
            for frame in range(count):
                bgr = cv2.cvtColor(fake_image(size, frame, camera), cv2.COLOR_RGB2BGR)
                if not cv2.imwrite(str(image_dir / f"{frame:010d}{image_ext}"), bgr):
                    raise OSError(f"cannot write {image_dir}")
        if with_velodyne:
            velo_dir = drive_dir / "velodyne_points" / "data"
            velo_dir.mkdir(parents=True, exist_ok=True)
            for frame in range(count):
                fake_scan(size, frame).tofile(velo_dir / f"{frame:010d}.bin")
        entries += [(f"{drive[:10]}/{drive}", frame, "l") for frame in range(count)]
    write_split(root / "splits" / "all_files.txt", entries)
    return root
