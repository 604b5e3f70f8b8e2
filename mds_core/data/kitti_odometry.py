"""KITTI odometry sequences, and sample sequences in the same spirit (``KITTI_sequence_N`` folders).

Layouts::

    ROOT/sequences/NN/image_0/NNNNNN.png     grey left camera (image_1: grey right)
    ROOT/sequences/NN/image_2/NNNNNN.png     colour left camera (image_3: colour right)
    ROOT/sequences/NN/calib.txt              lines "P0: <12 numbers>", "P1: ...", "P2: ...", "P3: ...", "Tr: ..."
    ROOT/sequences/NN/times.txt              optional: the time of each frame in seconds, one a line
    ROOT/poses/NN.txt                        optional ground truth: 12 numbers a line, the top 3x4 of
                                             world_from_camera of camera 0 (sequences 00-10)

    DIR/KITTI_sequence_N/image_l/NNNNNN.png  left grey camera (image_r: right)
    DIR/KITTI_sequence_N/calib.txt           two lines of 12 numbers without keys: P of the left, then
                                             of the right camera
    DIR/KITTI_sequence_N/poses.txt           ground truth, as ROOT/poses/NN.txt

``ROOT`` may also be one sequence folder (``ROOT/sequences/NN``, ``KITTI_sequence_N``) or a folder
that holds sequence folders.

Conventions:

* ``K`` is the left 3x3 of the camera's ``P``; the image size is that of its first image.
* Grey images are returned as RGB with three equal channels.
* The ground-truth poses are those of camera 0 (image_0, image_l). The cameras are rectified:
  ``P_c = K_c [I | t_c]`` with ``t_c = K_c^-1 P_c[:, 3]``, so a point's coordinates in camera ``c``
  are those in camera 0 plus ``t_c``, and the poses of camera ``c`` are
  ``world_from_c = world_from_0 @ [I | -t_c]`` (image_2 is 6 cm left of image_0, image_1 54 cm right).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mds_core.config import KITTI_ODOMETRY_CAMERAS
from mds_core.data.footage import select_by_name
from mds_core.data.sequence_folder import IMAGE_EXTENSIONS, DataError, read_rgb

#: Image folder -> the key of its projection matrix in calib.txt (unkeyed lines are P0, P1, ... in order).
CAMERA_PROJECTION: dict[str, str] = {"image_0": "P0", "image_1": "P1", "image_2": "P2", "image_3": "P3",
                                     "image_l": "P0", "image_r": "P1"}
#: The image folder used when none is named: colour when there is one.
CAMERA_PREFERENCE: tuple[str, ...] = ("image_2", "image_0", "image_l")


def read_odometry_calibration(path: Path) -> dict[str, np.ndarray]:
    """``calib.txt`` as key -> 1-D float64 array: ``key: values`` lines, and lines of bare numbers,
    which are ``P0``, ``P1``, ... in the order they come. Raises :class:`DataError` naming the line."""
    if not path.is_file():
        raise DataError(f"missing calibration file {path} (KITTI odometry: lines 'P0: <12 numbers>', ...)")
    result: dict[str, np.ndarray] = {}
    unkeyed = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, values = line.partition(":")
        if not sep:
            key, values = f"P{unkeyed}", line
            unkeyed += 1
        try:
            result[key.strip()] = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError as error:
            raise DataError(f"{path}:{number}: expected 'key: numbers' or 12 numbers, got {line.strip()[:80]!r}") \
                from error
    return result


def read_pose_file(path: Path) -> list[np.ndarray]:
    """KITTI odometry poses: 12 numbers a line (the top 3x4 of ``world_from_camera``), as 4x4 matrices."""
    poses = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = np.array([float(v) for v in line.split()], dtype=np.float64)
        except ValueError:
            values = np.zeros(0)
        if values.size != 12 or not np.all(np.isfinite(values)):
            raise DataError(f"{path}:{number}: a pose must be 12 finite numbers (3x4, row by row), "
                            f"got {line.strip()[:80]!r}")
        pose = np.eye(4)
        pose[:3, :4] = values.reshape(3, 4)
        poses.append(pose)
    return poses


def _is_sequence(path: Path) -> bool:
    return path.is_dir() and any((path / c).is_dir() for c in KITTI_ODOMETRY_CAMERAS)


class KittiOdometrySequence:
    """One camera of one KITTI odometry sequence folder (module docstring); a ``FrameSequence``.

    ``camera`` is the image folder (``image_0``, ``image_2``, ``image_l``, ...; empty = the first of
    :data:`CAMERA_PREFERENCE` there is); ``pose_file`` the ground truth (None: the sequence has none).
    ``depth`` and ``motion`` are always None.
    """

    def __init__(self, path: str | Path, camera: str = "", pose_file: Path | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError(f"KITTI odometry sequence {self.path} does not exist")
        if not camera:
            camera = next((c for c in CAMERA_PREFERENCE if (self.path / c).is_dir()), "")
            if not camera:
                raise DataError(f"{self.path}: no image folder ({', '.join(CAMERA_PREFERENCE)})")
        if camera not in CAMERA_PROJECTION:
            raise DataError(f"unknown KITTI odometry camera {camera!r} (one of {', '.join(CAMERA_PROJECTION)})")
        self.camera = camera
        self.name = self.path.name
        image_dir = self.path / camera
        if not image_dir.is_dir():
            raise DataError(f"{self.path}: no {camera}/ folder")
        self._images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self._images:
            raise DataError(f"{image_dir}: no .png/.jpg images")
        calib_path = self.path / "calib.txt"
        key = CAMERA_PROJECTION[camera]
        calibration = read_odometry_calibration(calib_path)
        if key not in calibration:
            raise DataError(f"{calib_path}: no {key} (the projection matrix of {camera}); it has "
                            f"{', '.join(calibration) or 'nothing'}")
        if calibration[key].size != 12 or not np.all(np.isfinite(calibration[key])):
            raise DataError(f"{calib_path}: {key} must be 12 finite numbers, got {calibration[key].size}")
        self.projection = calibration[key].reshape(3, 4)
        if self.projection[0, 0] <= 0 or self.projection[1, 1] <= 0:
            raise DataError(f"{calib_path}: {key} has non-positive focal lengths")
        self.pose_file = pose_file
        self._poses: list[np.ndarray] | None = None
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._images)

    def __repr__(self) -> str:
        return f"KittiOdometrySequence({str(self.path)!r}, {self.camera!r}, {len(self)} frames)"

    def frame_id(self, index: int) -> str:
        return self._images[index].stem

    def image(self, index: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB; a grey image has three equal channels."""
        return read_rgb(self._images[index])

    def intrinsics(self) -> tuple[np.ndarray, tuple[int, int]]:
        if self._size is None:
            first = cv2.imread(str(self._images[0]), cv2.IMREAD_UNCHANGED)
            if first is None:
                raise DataError(f"cannot read image {self._images[0]} (missing, truncated or not an image)")
            self._size = (int(first.shape[1]), int(first.shape[0]))
        return self.projection[:, :3].copy(), self._size

    def depth(self, index: int) -> np.ndarray | None:
        return None

    def motion(self, index: int) -> np.ndarray | None:
        return None

    def camera_offset(self) -> np.ndarray:
        """``t_c``: a point's coordinates in this camera minus those in camera 0 (module docstring)."""
        return np.linalg.solve(self.projection[:, :3], self.projection[:, 3])

    def poses(self) -> list[np.ndarray] | None:
        """Ground-truth ``world_from_camera`` (4x4) of this camera for every frame; None without a pose file."""
        if self.pose_file is None:
            return None
        if self._poses is None:
            poses = read_pose_file(self.pose_file)
            if len(poses) != len(self):
                raise DataError(f"{self.pose_file} has {len(poses)} poses for the {len(self)} images of "
                                f"{self.path / self.camera}")
            to_camera = np.eye(4)
            to_camera[:3, 3] = -self.camera_offset()
            self._poses = [pose @ to_camera for pose in poses]
        return [pose.copy() for pose in self._poses]

    def timestamps(self) -> list[float] | None:
        """Seconds of every frame from ``times.txt``; None without one."""
        path = self.path / "times.txt"
        if not path.is_file():
            return None
        try:
            times = [float(line) for line in path.read_text().split()]
        except ValueError as error:
            raise DataError(f"{path}: expected one number (seconds) a line ({error})") from error
        if len(times) != len(self):
            raise DataError(f"{path} has {len(times)} times for the {len(self)} images of {self.path / self.camera}")
        return times


def _pose_file(sequence: Path) -> Path | None:
    """``poses.txt`` in the sequence folder, or ``ROOT/poses/NN.txt`` for ``ROOT/sequences/NN``."""
    candidates = [sequence / "poses.txt"]
    if sequence.parent.name == "sequences":
        candidates.append(sequence.parent.parent / "poses" / f"{sequence.name}.txt")
    return next((p for p in candidates if p.is_file()), None)


def find_kitti_odometry_sequences(root: str | Path, names: list[str] | None = None,
                                  camera: str = "") -> list[KittiOdometrySequence]:
    """The sequences under ``root`` (module docstring: a KITTI odometry root, one sequence folder, or a
    folder of them), those named in ``names`` only when given, with ``camera``'s images."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"KITTI odometry root {root} does not exist or is not a directory")
    if _is_sequence(root):
        folders = [root]
    else:
        parent = root / "sequences" if (root / "sequences").is_dir() else root
        folders = sorted(p for p in parent.iterdir() if _is_sequence(p))
    if not folders:
        raise DataError(f"{root} holds no KITTI odometry sequences: expected ROOT/sequences/NN/image_0/ (or image_2/) "
                        f"and ROOT/sequences/NN/calib.txt, or folders with image_l/ and calib.txt")
    folders = select_by_name(folders, names, lambda p: p.name, str(root))
    return [KittiOdometrySequence(p, camera, _pose_file(p)) for p in folders]
