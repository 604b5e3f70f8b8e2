"""Short real clips with sparse lidar depth, in the layout of Dynamo-Depth's samples (``assets/tiny_*``).

Layout: a clip is any folder ``CAM`` holding ``rgb/original/<stem>.png|jpg`` (the frames, sorted by name)
and, for some frames, ``depth/<stem>.npy``: lidar points projected into the image, an ``(N, 3)`` array
whose last column is the depth in metres. The camera matrix, and the order of the first two columns, come
from the clip's source:

* nuScenes and Waymo: ``CAM/rgb/cam.json`` with ``camera_intrinsic`` (3x3, pixels of the original frames;
  nuScenes) or ``intrinsic`` (fx, fy, cx, cy, then distortion, which is ignored; Waymo); points are
  (x, y, depth);
* KITTI raw: ``calib_cam_to_cam.txt`` in the folder above ``CAM`` (``CAM`` is ``image_02`` or
  ``image_03``: ``P_rect_02`` / ``P_rect_03``); points are (row, column, depth).

A frame without a depth file has no ground truth (``depth`` is None); points outside the frame or at
a depth <= 0 are dropped, and where two points fall on one pixel the nearer one is kept. The clips are
scored for depth only (``mds eval --format lidar_clips``; ``mds real-benchmark --lidar-clips``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mds_core.data.footage import ImageFileSequence, select_by_name
from mds_core.data.sequence_folder import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class LidarClip(ImageFileSequence):
    """One clip (module docstring). Implements ``FrameSequence``; ``motion`` is always None."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._images = sorted(p for p in (self.folder / "rgb" / "original").iterdir()
                              if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._images:
            raise DataError(f"lidar clip {self.folder}: no frames in rgb/original/")
        # KITTI: .../<drive>/image_02 -> "<drive>/image_02"; nuScenes and Waymo: .../<scene>/FRONT -> "<scene>/FRONT"
        self.name = f"{self.folder.parent.name}/{self.folder.name}"

    @property
    def _points_are_xy(self) -> bool:
        """nuScenes and Waymo clips store points as (x, y, depth), KITTI ones as (row, column, depth)."""
        return (self.folder / "rgb" / "cam.json").is_file()

    def _camera_matrix(self, size: tuple[int, int]) -> np.ndarray:
        cam_json = self.folder / "rgb" / "cam.json"
        if cam_json.is_file():
            try:
                camera = json.loads(cam_json.read_text())
                if "camera_intrinsic" in camera:
                    matrix = np.asarray(camera["camera_intrinsic"], np.float64)
                else:
                    fx, fy, cx, cy = (float(v) for v in camera["intrinsic"][:4])
                    matrix = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
            except (ValueError, KeyError, TypeError) as error:
                raise DataError(f"{cam_json}: no camera_intrinsic (3x3) or intrinsic (fx, fy, cx, cy, ...): "
                                f"{error!r}") from error
            if matrix.shape != (3, 3):
                raise DataError(f"{cam_json}: camera_intrinsic is {matrix.shape}, expected 3x3")
            return matrix
        calib = self.folder.parent / "calib_cam_to_cam.txt"
        key = f"P_rect_{self.folder.name[-2:]}:"
        if calib.is_file():
            for line in calib.read_text().splitlines():
                if line.startswith(key):
                    values = np.array(line[len(key):].split(), np.float64)
                    if values.size == 12:
                        return values.reshape(3, 4)[:, :3].copy()
        raise DataError(f"lidar clip {self.folder}: no camera matrix (rgb/cam.json, or {key[:-1]} in "
                        f"{calib})")

    def depth(self, index: int) -> np.ndarray | None:
        """``(H, W)`` float32 metres at the lidar points, 0 elsewhere; None for a frame without points."""
        path = self.folder / "depth" / f"{self._images[index].stem}.npy"
        if not path.is_file():
            return None
        try:
            points = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read lidar depth {path}: {error}") from error
        if points.ndim != 2 or points.shape[1] != 3:
            raise DataError(f"lidar depth {path} is {points.shape}, expected (N, 3) rows of points and depth")
        _, (width, height) = self.intrinsics()
        first, second = np.round(points[:, 0]).astype(np.int64), np.round(points[:, 1]).astype(np.int64)
        cols, rows = (first, second) if self._points_are_xy else (second, first)
        depth = points[:, 2]
        keep = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width) & np.isfinite(depth) & (depth > 0)
        rows, cols, depth = rows[keep], cols[keep], depth[keep]
        order = np.argsort(-depth)  # nearer points written last: they win a shared pixel
        out = np.zeros((height, width), np.float32)
        out[rows[order], cols[order]] = depth[order]
        return out

    def motion(self, index: int) -> np.ndarray | None:
        return None


def find_lidar_clips(root: str | Path, names: list[str] | None = None) -> list[LidarClip]:
    """Every clip under ``root`` (folders holding ``rgb/original``), those whose name (``<parent>/<folder>``,
    or the folder's own name) is in ``names`` only when given."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"lidar clips root {root} does not exist or is not a directory")
    folders = sorted(p.parent.parent for p in root.rglob("original") if p.is_dir() and p.parent.name == "rgb")
    if not folders:
        raise DataError(f"{root} holds no lidar clips: expected CLIP/rgb/original/<frame>.png|jpg with "
                        "CLIP/depth/<frame>.npy (Dynamo-Depth's assets/tiny_* layout)")
    clips = [LidarClip(folder) for folder in folders]
    return select_by_name(clips, names, lambda c: c.name, str(root)) if names else clips
