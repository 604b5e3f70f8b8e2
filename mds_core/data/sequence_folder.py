"""The generic sequence-folder format for custom data.

::

    ROOT/<sequence>/images/NNNNNN.png|jpg     frames in temporal order
    ROOT/<sequence>/calib.json                {"K": [[fx,0,cx],[0,fy,cy],[0,0,1]], "width": W, "height": H}
    ROOT/<sequence>/depth/NNNNNN.npy          optional GT depth, float32 metres, 0 = none
    ROOT/<sequence>/motion/NNNNNN.png         optional uint8 labels: 0 static background,
                                              1 moving object, 2 static movable object, 255 unlabelled
    ROOT/<sequence>/instances/NNNNNN.png      optional uint16 object ids (0 none), with
    ROOT/<sequence>/poses.json                {"objects": {id: {"kind": ..., "poses": [4x4 ...]}},
                                              "camera_poses": [4x4 ...]}: what moves how, world_from_camera
                                              and world_from_object per frame (``mds synth`` writes both)

``K`` is in pixel units of images of size ``width`` x ``height``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from mds_core.method.true_motion import TrueMotion

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: A camera that moved less than this since the previous frame (poses.json's units) stood still.
CAMERA_STILL_METRES = 1e-3
#: ... and turned by less than this between two frames
CAMERA_STILL_RADIANS = 1e-4


class DataError(ValueError):
    """A data set on disk is missing or malformed; the message says which file and why."""


@dataclass(frozen=True)
class FrameSituation:
    """What moves how in one frame: ``instances`` ``(H, W)`` object ids (0 none), the kind of each id
    (``mds synth``'s object kinds), and whether the camera moved since the previous frame."""

    instances: np.ndarray
    kinds: dict[int, str]
    camera_moved: bool


class FrameSequence(Protocol):
    """A temporally ordered sequence of frames from one camera."""

    name: str

    def __len__(self) -> int: ...

    def frame_id(self, index: int) -> str: ...

    def image(self, index: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB at the native resolution."""

    def intrinsics(self) -> tuple[np.ndarray, tuple[int, int]]:
        """``(K (3x3, pixels), (width, height))`` of the native images."""

    def depth(self, index: int) -> np.ndarray | None:
        """Optional ``(H, W)`` float32 ground-truth depth in metres (0 = none)."""

    def motion(self, index: int) -> np.ndarray | None:
        """Optional ``(H, W)`` uint8 motion labels."""


def camera_moved(previous: np.ndarray, current: np.ndarray) -> bool:
    """Whether a camera moved or turned between two ``world_from_camera`` poses (3x4 or 4x4)."""
    step = float(np.linalg.norm(current[:3, 3] - previous[:3, 3]))
    # the angle between the orientations: trace(R_a^T R_b) = 1 + 2 cos(angle)
    cosine = 0.5 * (float(np.einsum("ij,ij->", previous[:3, :3], current[:3, :3])) - 1.0)
    return step > CAMERA_STILL_METRES or float(np.arccos(np.clip(cosine, -1.0, 1.0))) > CAMERA_STILL_RADIANS


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB, with a clear error when unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"cannot read image {path} (missing, truncated or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_calibration(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """Parse ``calib.json``; returns ``(K, (width, height))``."""
    if not path.is_file():
        raise DataError(f"missing calibration file {path}")
    try:
        data = json.loads(path.read_text())
        matrix = np.asarray(data["K"], dtype=np.float64)
        size = (int(data["width"]), int(data["height"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise DataError(
            f"{path}: expected {{\"K\": [[fx,0,cx],[0,fy,cy],[0,0,1]], \"width\": W, \"height\": H}} ({error})"
        ) from error
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        raise DataError(f"{path}: K must be a finite 3x3 matrix, got {data['K']!r}")
    if matrix[0, 0] <= 0 or matrix[1, 1] <= 0 or size[0] <= 0 or size[1] <= 0:
        raise DataError(f"{path}: focal lengths and image size must be positive")
    return matrix, size


class SequenceFolder:
    """One ``ROOT/<sequence>`` directory of the sequence-folder format."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.name
        image_dir = self.path / "images"
        if not image_dir.is_dir():
            raise DataError(f"{self.path}: no images/ directory")
        self._images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self._images:
            raise DataError(f"{image_dir}: no .png/.jpg images")
        self._calibration = read_calibration(self.path / "calib.json")
        self._situations: tuple[dict[int, str], list[bool] | None] | None = None  # read on first use
        self._poses: dict | None = None

    def __len__(self) -> int:
        return len(self._images)

    def frame_id(self, index: int) -> str:
        return self._images[index].stem

    def image(self, index: int) -> np.ndarray:
        return read_rgb(self._images[index])

    def intrinsics(self) -> tuple[np.ndarray, tuple[int, int]]:
        return self._calibration

    def depth(self, index: int) -> np.ndarray | None:
        path = self.path / "depth" / f"{self.frame_id(index)}.npy"
        if not path.is_file():
            return None
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read depth {path}: {error}") from error
        if depth.ndim != 2:
            raise DataError(f"{path}: depth must be a 2-D array, got shape {depth.shape}")
        return depth.astype(np.float32, copy=False)

    def motion(self, index: int) -> np.ndarray | None:
        path = self.path / "motion" / f"{self.frame_id(index)}.png"
        if not path.is_file():
            return None
        labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if labels is None or labels.ndim != 2:
            raise DataError(f"cannot read motion labels {path} as a single-channel image")
        return labels.astype(np.uint8, copy=False)

    def situation(self, index: int) -> FrameSituation | None:
        """Which object moves how in frame ``index`` and whether the camera moved since the previous
        frame (scored by :mod:`mds_core.evaluation.situations`); None without instances, kinds and camera poses."""
        path = self.path / "instances" / f"{self.frame_id(index)}.png"
        kinds, moved = self._situation_record()
        if not kinds or moved is None or index >= len(moved) or not path.is_file():
            return None
        instances = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if instances is None or instances.ndim != 2:
            raise DataError(f"cannot read instance ids {path} as a single-channel image")
        return FrameSituation(instances=instances.astype(np.int64), kinds=kinds, camera_moved=moved[index])

    def _pose_record(self) -> dict:
        """poses.json, read once ({} without one)."""
        if self._poses is None:
            path = self.path / "poses.json"
            try:
                self._poses = json.loads(path.read_text()) if path.is_file() else {}
            except (OSError, ValueError) as error:
                raise DataError(f"cannot read {path}: {error}") from error
        return self._poses

    def _situation_record(self) -> tuple[dict[int, str], list[bool] | None]:
        """The object kinds and, per frame, whether the camera moved (poses.json), read once."""
        if self._situations is None:
            kinds, moved = {}, None
            poses = self._pose_record()
            if poses:
                try:
                    kinds = {int(i): str(entry.get("kind", "")) for i, entry in poses.get("objects", {}).items()}
                    cameras = np.array(poses["camera_poses"], dtype=np.float64)[:, :3]
                except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
                    raise DataError(f"cannot read {self.path / 'poses.json'}: {error}") from error
                moved = [True, *(camera_moved(a, b) for a, b in zip(cameras[:-1], cameras[1:]))]
            self._situations = (kinds, moved)
        return self._situations

    def true_motion(self, index: int, sources: list[int]) -> TrueMotion:
        """The true rigid motions from frame ``index`` to each frame of ``sources`` (the oracle rung
        "motion", :mod:`mds_core.method.true_motion`), from instances/ and poses.json."""
        path = self.path / "instances" / f"{self.frame_id(index)}.png"
        instances = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
        if instances is None or instances.ndim != 2:
            raise DataError(f"{path}: the true motion needs the frame's instance ids (a single-channel png)")
        poses = self._pose_record()
        try:
            cameras = np.asarray(poses["camera_poses"], dtype=np.float64)
            ids = [int(i) for i in np.unique(instances) if i > 0 and str(int(i)) in poses.get("objects", {})]
            objects = {i: np.asarray(poses["objects"][str(i)]["poses"], dtype=np.float64) for i in ids}
            transforms = []
            for source in sources:
                to_source = np.linalg.inv(cameras[source]) @ cameras[index]  # the static world
                moved = [np.linalg.inv(cameras[source]) @ objects[i][source] @ np.linalg.inv(objects[i][index])
                         @ cameras[index] for i in ids]
                transforms.append(np.stack([to_source, *moved]))
        except (KeyError, TypeError, ValueError, IndexError, np.linalg.LinAlgError) as error:
            raise DataError(f"{self.path / 'poses.json'}: no usable camera and object poses for frames "
                            f"{index} and {sources}: {error}") from error
        components = np.zeros(instances.shape, np.int64)
        for n, i in enumerate(ids, start=1):
            components[instances == i] = n
        return TrueMotion(torch.from_numpy(components)[None], torch.from_numpy(np.stack(transforms)).float())


def find_sequences(root: str | Path) -> list[SequenceFolder]:
    """All sequences under ``root`` (or ``root`` itself if it is a sequence)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data root {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data root {root} is not a directory")
    if (root / "images").is_dir():
        return [SequenceFolder(root)]
    candidates = sorted(p for p in root.iterdir() if (p / "images").is_dir())
    if not candidates:
        raise DataError(
            f"{root} holds no sequences: expected ROOT/<sequence>/images/*.png and "
            f"ROOT/<sequence>/calib.json (see README, 'Data formats')"
        )
    return [SequenceFolder(p) for p in candidates]
