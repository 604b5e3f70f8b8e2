"""KITTI raw data (synced + rectified), as used by Monodepth2 and the Eigen/Zhou splits.

Layout::

    ROOT/<date>/calib_cam_to_cam.txt      S_rect_0x (width height), R_rect_00, P_rect_0x, ...
    ROOT/<date>/calib_velo_to_cam.txt     R (3x3), T (3)
    ROOT/<date>/<date>_drive_NNNN_sync/image_02/data/0000000000.png|jpg   left colour camera
    ROOT/<date>/<date>_drive_NNNN_sync/image_03/data/0000000000.png|jpg   right colour camera
    ROOT/<date>/<date>_drive_NNNN_sync/velodyne_points/data/0000000000.bin  float32 (N, 4)

Split files (Zhou/Eigen, Monodepth2's ``splits/*/*_files.txt``) hold lines
``<date>/<drive folder> <frame index> <l|r>``; ``l`` is ``image_02``, ``r`` is ``image_03``.

Conventions:

* Intrinsics: ``K = P_rect_0c[:, :3]`` (camera ``c`` = 2 or 3) in pixels of the rectified images;
  the size is ``S_rect_0c`` when present, else that of the first image (a mismatch between the two
  is a :class:`DataError`: resized copies of KITTI need their own calibration).
* Ground-truth depth from the velodyne scan, as Monodepth2/Eigen do it: points with
  ``x >= 0`` in the velodyne frame are mapped by ``P_rect_0c @ R_rect_00 @ [R T; 0 1]``; the depth
  is the third homogeneous coordinate (must be > 0); the pixel column/row are
  ``round(p_x / p_z) - 1`` and ``round(p_y / p_z) - 1`` with ``eigen_pixel_shift=True``
  (the default: the one-pixel shift of Eigen's MATLAB code that Monodepth2 and every published
  KITTI number inherit), or ``round(...)`` with ``eigen_pixel_shift=False`` (the integer
  pixel-centre convention ``u = 0..W-1`` used for back-projection in this project). ``round`` is
  NumPy's (half to even). Points outside the image are dropped; where several points fall into
  one pixel the nearest depth is kept. Depth maps are ``(H, W)`` float32 metres, 0 = no point.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mds_core.data.dataset import TargetFrame, valid_targets
from mds_core.data.sequence_folder import IMAGE_EXTENSIONS, DataError, read_rgb

LOGGER = logging.getLogger(__name__)

#: Split-file side letter -> KITTI camera number.
SIDE_CAMERA: dict[str, int] = {"l": 2, "r": 3}
FRAME_DIGITS = 10


def read_calib_file(path: str | Path) -> dict[str, np.ndarray]:
    """Parse a KITTI calibration text file: lines ``key: v1 v2 ...``.

    Returns key -> 1-D float64 array. Lines whose values are not all numbers (``calib_time``) and
    blank lines are skipped. Raises :class:`DataError` on a missing file or a line without ``:``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing KITTI calibration file {path}")
    result: dict[str, np.ndarray] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, values = line.partition(":")
        if not sep or not key.strip():
            raise DataError(f"{path}:{number}: expected 'key: values', got {line.strip()!r}")
        try:
            result[key.strip()] = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError:
            continue  # e.g. calib_time: 09-Jan-2012 13:57:47
    return result


def _matrix(calib: dict[str, np.ndarray], key: str, shape: tuple[int, int], path: Path) -> np.ndarray:
    if key not in calib:
        raise DataError(f"{path}: no {key}")
    values = calib[key]
    if values.size != shape[0] * shape[1] or not np.all(np.isfinite(values)):
        raise DataError(f"{path}: {key} must hold {shape[0] * shape[1]} finite numbers, got {values.size}")
    return values.reshape(shape)


@dataclass(frozen=True)
class KittiCameraCalibration:
    """Rectified calibration of one colour camera of one recording day.

    ``projection``: ``P_rect_0c`` (3x4); ``rectification``: ``R_rect_00`` (3x3);
    ``size``: ``(width, height)`` from ``S_rect_0c`` or None when the file has none.
    """

    camera: int
    projection: np.ndarray
    rectification: np.ndarray
    size: tuple[int, int] | None

    @classmethod
    def load(cls, date_dir: Path, camera: int) -> KittiCameraCalibration:
        path = date_dir / "calib_cam_to_cam.txt"
        calib = read_calib_file(path)
        projection = _matrix(calib, f"P_rect_0{camera}", (3, 4), path)
        rectification = _matrix(calib, "R_rect_00", (3, 3), path)
        size = None
        if f"S_rect_0{camera}" in calib:
            w, h = _matrix(calib, f"S_rect_0{camera}", (1, 2), path)[0]
            if w <= 0 or h <= 0:
                raise DataError(f"{path}: S_rect_0{camera} must be positive, got {w} {h}")
            size = (int(round(w)), int(round(h)))
        if projection[0, 0] <= 0 or projection[1, 1] <= 0:
            raise DataError(f"{path}: P_rect_0{camera} has non-positive focal lengths")
        return cls(camera, projection, rectification, size)


def read_velo_to_cam(date_dir: Path) -> np.ndarray:
    """The 4x4 velodyne -> (unrectified) camera 0 transform from ``calib_velo_to_cam.txt``."""
    path = date_dir / "calib_velo_to_cam.txt"
    calib = read_calib_file(path)
    transform = np.eye(4)
    transform[:3, :3] = _matrix(calib, "R", (3, 3), path)
    transform[:3, 3] = _matrix(calib, "T", (3, 1), path)[:, 0]
    return transform


def velodyne_to_image_matrix(calibration: KittiCameraCalibration, velo_to_cam: np.ndarray) -> np.ndarray:
    """``P_rect_0c @ R_rect_00 @ velo_to_cam`` (3x4): velodyne point -> homogeneous pixel."""
    rect = np.eye(4)
    rect[:3, :3] = calibration.rectification
    return calibration.projection @ rect @ velo_to_cam


def read_velodyne(path: str | Path) -> np.ndarray:
    """A velodyne scan as ``(N, 4)`` float32 (x, y, z, reflectance)."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.float32)
    except OSError as error:
        raise DataError(f"cannot read velodyne scan {path}: {error}") from error
    if raw.size % 4:
        raise DataError(f"{path}: size is not a multiple of 4 float32 values (truncated?)")
    return raw.reshape(-1, 4)


def velodyne_depth_map(
    points: np.ndarray,
    velo_to_image: np.ndarray,
    size: tuple[int, int],
    eigen_pixel_shift: bool = True,
) -> np.ndarray:
    """Project velodyne points ``(N, >=3)`` into an ``(H, W)`` float32 depth map (module docstring
    gives the convention); ``size`` is ``(width, height)``."""
    width, height = size
    points = np.asarray(points, dtype=np.float64)
    points = points[points[:, 0] >= 0, :3]
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    projected = homogeneous @ velo_to_image.T
    depth = projected[:, 2]
    in_front = depth > 0
    projected, depth = projected[in_front], depth[in_front]
    shift = 1 if eigen_pixel_shift else 0
    u = np.round(projected[:, 0] / depth).astype(np.int64) - shift
    v = np.round(projected[:, 1] / depth).astype(np.int64) - shift
    inside = (u >= 0) & (v >= 0) & (u < width) & (v < height)
    flat, depth = v[inside] * width + u[inside], depth[inside]
    result = np.zeros(height * width, dtype=np.float32)
    if flat.size:
        order = np.lexsort((depth, flat))  # by pixel, nearest first
        flat, depth = flat[order], depth[order]
        first = np.ones(flat.size, dtype=bool)
        first[1:] = flat[1:] != flat[:-1]
        result[flat[first]] = depth[first]
    return result.reshape(height, width)


def _frame_files(data_dir: Path) -> list[Path]:
    """Image files of ``data_dir`` indexed by frame, checking names ``0..N-1`` (10 digits).

    When a frame exists both as .png and .jpg the .png is used.
    """
    if not data_dir.is_dir():
        raise DataError(f"missing KITTI image folder {data_dir}")
    by_stem: dict[str, Path] = {}
    for path in data_dir.iterdir():
        suffix = path.suffix.lower()
        if suffix not in IMAGE_EXTENSIONS:
            continue
        if path.stem not in by_stem or suffix == ".png":
            by_stem[path.stem] = path
    if not by_stem:
        raise DataError(f"{data_dir}: no .png/.jpg images")
    stems = sorted(by_stem)
    expected = [f"{i:0{FRAME_DIGITS}d}" for i in range(len(stems))]
    if stems != expected:
        wrong = next(s for s, e in zip(stems, expected) if s != e)
        raise DataError(
            f"{data_dir}: frames must be named 0000000000.. contiguously ({len(stems)} files), "
            f"found {wrong!r} where {expected[stems.index(wrong)]!r} was expected"
        )
    return [by_stem[s] for s in stems]


class KittiSequence:
    """One camera (``side`` ``'l'`` = image_02 or ``'r'`` = image_03) of one KITTI raw drive.

    ``folder`` is relative to ``root``, as in split files: ``2011_09_26/2011_09_26_drive_0001_sync``.
    Implements the ``FrameSequence`` protocol; ``motion`` is always None (KITTI raw has no labels).
    """

    def __init__(self, root: str | Path, folder: str, side: str = "l", eigen_pixel_shift: bool = True):
        if side not in SIDE_CAMERA:
            raise DataError(f"KITTI side must be 'l' or 'r', got {side!r}")
        self.root = Path(root)
        self.folder = folder.strip("/")
        self.side = side
        self.camera = SIDE_CAMERA[side]
        self.eigen_pixel_shift = eigen_pixel_shift
        self.path = self.root / self.folder
        if not self.path.is_dir():
            raise DataError(f"KITTI drive folder {self.path} does not exist (named {folder!r})")
        self.date_dir = self.path.parent
        self.name = f"{self.path.name}_{side}"
        self._images = _frame_files(self.path / f"image_0{self.camera}" / "data")
        self._velodyne_dir = self.path / "velodyne_points" / "data"
        self.calibration = KittiCameraCalibration.load(self.date_dir, self.camera)
        self._intrinsics: tuple[np.ndarray, tuple[int, int]] | None = None
        self._velo_to_image: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._images)

    def __repr__(self) -> str:
        return f"KittiSequence({self.folder!r}, {self.side!r}, {len(self)} frames)"

    def frame_id(self, index: int) -> str:
        return self._images[index].stem

    def image_path(self, index: int) -> Path:
        return self._images[index]

    def image(self, index: int) -> np.ndarray:
        return read_rgb(self._images[index])

    def intrinsics(self) -> tuple[np.ndarray, tuple[int, int]]:
        """``(K, (width, height))``; K from ``P_rect_0c``. Checks the first image's size once."""
        if self._intrinsics is None:
            first = cv2.imread(str(self._images[0]), cv2.IMREAD_UNCHANGED)
            if first is None:
                raise DataError(f"cannot read image {self._images[0]}")
            image_size = (int(first.shape[1]), int(first.shape[0]))
            size = self.calibration.size or image_size
            if size != image_size:
                raise DataError(
                    f"{self._images[0]} is {image_size[0]}x{image_size[1]} but "
                    f"{self.date_dir / 'calib_cam_to_cam.txt'} says S_rect_0{self.camera} = "
                    f"{size[0]}x{size[1]} (resized images need a matching calibration)"
                )
            self._intrinsics = (self.calibration.projection[:, :3].copy(), size)
        matrix, size = self._intrinsics
        return matrix.copy(), size

    def velodyne_path(self, index: int) -> Path:
        return self._velodyne_dir / f"{self.frame_id(index)}.bin"

    def depth(self, index: int) -> np.ndarray | None:
        """Velodyne ground truth for frame ``index`` (module docstring); None without a scan."""
        path = self.velodyne_path(index)
        if not path.is_file():
            return None
        if self._velo_to_image is None:
            self._velo_to_image = velodyne_to_image_matrix(self.calibration, read_velo_to_cam(self.date_dir))
        _, size = self.intrinsics()
        return velodyne_depth_map(read_velodyne(path), self._velo_to_image, size, self.eigen_pixel_shift)

    def motion(self, index: int) -> np.ndarray | None:
        return None


def read_split_file(path: str | Path) -> list[tuple[str, int, str]]:
    """Parse a split file into ``(folder, frame index, side)`` tuples; blank lines are skipped.

    Raises :class:`DataError` naming the line for anything but ``<folder> <int >= 0> <l|r>``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing split file {path}")
    entries: list[tuple[str, int, str]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        problem = None
        if len(fields) != 3:
            problem = f"expected 3 fields, got {len(fields)}"
        elif fields[2] not in SIDE_CAMERA:
            problem = f"side must be 'l' or 'r', got {fields[2]!r}"
        elif not fields[1].isdigit():
            problem = f"frame index must be a non-negative integer, got {fields[1]!r}"
        if problem:
            raise DataError(
                f"{path}:{number}: {problem} in {line.strip()!r} "
                "(expected e.g. '2011_09_26/2011_09_26_drive_0022_sync 473 r')"
            )
        entries.append((fields[0].strip("/"), int(fields[1]), fields[2]))
    return entries


@dataclass
class KittiSelection:
    """Sequences and targets chosen from KITTI; ``dropped`` lists the split entries left out
    because a source frame would fall outside its drive."""

    sequences: list[KittiSequence]
    targets: list[TargetFrame]
    dropped: list[tuple[str, int, str]] = field(default_factory=list)


def find_kitti_drives(root: str | Path) -> list[str]:
    """Drive folders ``<date>/<drive>`` under ``root`` that hold ``image_02/data``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"KITTI root {root} does not exist or is not a directory")
    drives = sorted(
        f"{date.name}/{drive.name}"
        for date in root.iterdir()
        if date.is_dir()
        for drive in date.iterdir()
        if (drive / "image_02" / "data").is_dir()
    )
    if not drives:
        raise DataError(
            f"{root} holds no KITTI raw drives: expected ROOT/<date>/<date>_drive_NNNN_sync/image_02/data/"
        )
    return drives


def select_kitti(
    root: str | Path,
    split_path: str | Path | None,
    source_offsets: list[int],
    eigen_pixel_shift: bool = True,
) -> KittiSelection:
    """Like :func:`kitti_sequences_and_targets`, also returning the dropped split entries."""
    root = Path(root)
    offsets = list(source_offsets)
    if split_path is None:
        sequences = [KittiSequence(root, d, "l", eigen_pixel_shift) for d in find_kitti_drives(root)]
        return KittiSelection(sequences, valid_targets(sequences, offsets or [0]))
    if not root.is_dir():
        raise DataError(f"KITTI root {root} does not exist or is not a directory")
    entries = read_split_file(split_path)
    sequences: list[KittiSequence] = []
    index: dict[tuple[str, str], int] = {}
    targets: list[TargetFrame] = []
    dropped: list[tuple[str, int, str]] = []
    for folder, frame, side in entries:
        key = (folder, side)
        if key not in index:
            if not (root / folder).is_dir():
                raise DataError(
                    f"drive {folder!r} named in split {split_path} is not under KITTI root {root}"
                )
            index[key] = len(sequences)
            sequences.append(KittiSequence(root, folder, side, eigen_pixel_shift))
        sequence = sequences[index[key]]
        if not 0 <= frame < len(sequence):
            raise DataError(
                f"split {split_path}: frame {frame} of {folder!r} ({side}) does not exist "
                f"(the drive has {len(sequence)} frames)"
            )
        if any(not 0 <= frame + o < len(sequence) for o in offsets):
            dropped.append((folder, frame, side))
            continue
        targets.append(TargetFrame(index[key], frame))
    return KittiSelection(sequences, targets, dropped)


def kitti_sequences_and_targets(
    root: str | Path,
    split_path: str | Path | None,
    source_offsets: list[int],
    eigen_pixel_shift: bool = True,
) -> tuple[list[KittiSequence], list[TargetFrame]]:
    """KITTI sequences and target frames, from a split file or from every drive under ``root``.

    With a split: one sequence per (drive folder, side) in order of first appearance, targets in
    the split's order; entries whose source frames (``frame + offset``) fall outside the drive are
    dropped with a logged warning (pass ``source_offsets=[]`` for evaluation so that targets stay
    aligned with the split, e.g. with ``gt_depths.npz``). A drive missing under ``root`` or a
    target frame beyond its drive is a :class:`DataError`. Without a split: every drive found under
    ``root``, left camera, all targets whose sources exist.
    """
    selection = select_kitti(root, split_path, source_offsets, eigen_pixel_shift)
    if selection.dropped:
        LOGGER.warning(
            "%d of %d split entries dropped: source frames %s fall outside the drive (first: %s)",
            len(selection.dropped),
            len(selection.dropped) + len(selection.targets),
            list(source_offsets),
            " ".join(map(str, selection.dropped[0])),
        )
    return selection.sequences, selection.targets


def load_gt_depths_npz(path: str | Path, allow_pickle: bool = False) -> list[np.ndarray]:
    """Ground-truth depth maps from Monodepth2's exported ``gt_depths.npz`` (key ``data``).

    Returns one ``(H, W)`` float32 array per split line. Monodepth2's own files hold an object
    array of differently sized maps, which NumPy can only read by unpickling: that needs
    ``allow_pickle=True`` and should only be done for files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing ground-truth file {path}")
    try:
        with np.load(path, allow_pickle=allow_pickle) as archive:
            if "data" not in archive.files:
                raise DataError(f"{path}: no 'data' array (has {archive.files})")
            data = archive["data"]
    except DataError:
        raise
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise DataError(
                f"{path} stores pickled objects (maps of different sizes); load it with "
                "allow_pickle=True if you trust the file"
            ) from error
        raise DataError(f"cannot read {path}: {error}") from error
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from error
    if data.dtype == object:
        maps = [np.asarray(d, dtype=np.float32) for d in data]
    elif data.ndim == 3:
        maps = [d.astype(np.float32) for d in data]
    elif data.ndim == 2:
        maps = [data.astype(np.float32)]
    else:
        raise DataError(f"{path}: 'data' has unexpected shape {data.shape}")
    for i, depth in enumerate(maps):
        if depth.ndim != 2:
            raise DataError(f"{path}: map {i} has shape {depth.shape}, expected (H, W)")
    return maps
