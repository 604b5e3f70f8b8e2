"""Intrinsics of a bag's frames at the training resolution, and optional undistortion.

Rules (also in the README):

* ``data.bag.intrinsics`` ``[fx, fy, cx, cy]`` (pixels of the bag's images) wins over any
  CameraInfo; the images are used as they are.
* An image topic whose name contains ``rect`` is rectified (``image_rect``, ``image_rect_color``):
  ``P[:, :3]`` is its camera matrix (``K`` when ``P`` is unset) and no distortion is removed.
* Otherwise ``K`` is used. When the CameraInfo's ``D`` is not zero and ``data.bag.undistort`` is
  true, ``plumb_bob`` / ``rational_polynomial`` (OpenCV's model) and ``equidistant`` (OpenCV's
  fisheye) distortion is removed: the frame, already resized to the training resolution, is
  remapped (bilinear) to a pinhole image of the same size whose camera matrix keeps only valid
  pixels (``alpha = 0`` / ``balance = 0``). Other models, or ``undistort: false``, keep the
  distorted images with ``K`` and say so in the report.
* ``K`` is scaled to the training resolution as everywhere in this package: rows 0 and 1 are
  multiplied by the size ratios (Monodepth2's convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mds_core.data.rosbag.decode import Calibration
from mds_core.data.sequence_folder import DataError

UNDISTORTABLE = ("plumb_bob", "rational_polynomial", "equidistant")


def is_rectified_topic(topic: str) -> bool:
    """``image_rect``, ``image_rect_color`` (also ``.../compressed``): images already rectified."""
    stream = topic[: -len("/compressed")] if topic.endswith("/compressed") else topic
    return "rect" in stream.rsplit("/", 1)[-1]


def scale_matrix(matrix: np.ndarray, native: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """``K`` of ``native`` ``(w, h)`` images resized to ``size`` ``(W, H)``."""
    scaled = np.array(matrix, dtype=np.float64, copy=True)
    scaled[0] *= size[0] / native[0]
    scaled[1] *= size[1] / native[1]
    return scaled


class Undistorter:
    """Remaps ``size`` frames with a distortion model to a pinhole camera ``self.matrix``."""

    def __init__(self, matrix: np.ndarray, distortion: np.ndarray, model: str, size: tuple[int, int]):
        if model == "equidistant":
            d = np.zeros(4)
            d[: min(4, distortion.size)] = distortion[:4]
            self.matrix = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
                matrix, d, size, np.eye(3), balance=0.0, new_size=size)
            self.map1, self.map2 = cv2.fisheye.initUndistortRectifyMap(
                matrix, d, np.eye(3), self.matrix, size, cv2.CV_16SC2)
        else:
            self.matrix, _ = cv2.getOptimalNewCameraMatrix(matrix, distortion, size, 0.0, size)
            self.map1, self.map2 = cv2.initUndistortRectifyMap(matrix, distortion, None, self.matrix, size, cv2.CV_16SC2)
        self.matrix = np.asarray(self.matrix, dtype=np.float64)
        if not (np.all(np.isfinite(self.matrix)) and self.matrix[0, 0] > 0 and self.matrix[1, 1] > 0):
            raise DataError(f"the CameraInfo's {model} distortion {list(distortion)} cannot be undistorted "
                            f"(set data.bag.undistort=false or give --intrinsics)")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return cv2.remap(image, self.map1, self.map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass
class TrainingCamera:
    """``matrix``: K at the training size; ``undistort``: applied to each cached frame or None."""

    matrix: np.ndarray
    undistort: Undistorter | None
    description: str


def training_camera(
    native: tuple[int, int],
    size: tuple[int, int],
    calibration: Calibration | None,
    override: list[float] | None,
    rectified: bool,
    undistort: bool,
    where: str,
) -> TrainingCamera:
    """Camera of frames ``native`` ``(w, h)`` resized to ``size`` (module docstring for the rules)."""
    if override is not None:
        fx, fy, cx, cy = override
        matrix = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return TrainingCamera(scale_matrix(matrix, native, size), None, "data.bag.intrinsics (images used as they are)")
    assert calibration is not None
    if calibration.width and calibration.height and (calibration.width, calibration.height) != native:
        raise DataError(f"{where}: the CameraInfo is for {calibration.width}x{calibration.height} images but the "
                        f"images are {native[0]}x{native[1]}; give the intrinsics with --intrinsics FX FY CX CY")
    if rectified:
        projection = calibration.projection
        use_p = projection[0, 0] > 0 and projection[1, 1] > 0
        matrix = projection[:, :3] if use_p else calibration.matrix
        text = "CameraInfo P (rectified images)" if use_p else "CameraInfo K (rectified images, P unset)"
        return TrainingCamera(scale_matrix(matrix, native, size), None, text)
    matrix = scale_matrix(calibration.matrix, native, size)
    if not calibration.distorted:
        return TrainingCamera(matrix, None, "CameraInfo K, no distortion")
    model = calibration.model
    if not undistort or model not in UNDISTORTABLE:
        why = "data.bag.undistort is false" if not undistort else f"model {model!r} is not supported"
        return TrainingCamera(matrix, None, f"CameraInfo K; {model} distortion NOT removed ({why})")
    undistorter = Undistorter(matrix, np.asarray(calibration.D, dtype=np.float64), model, size)
    return TrainingCamera(undistorter.matrix, undistorter, f"CameraInfo K; {model} distortion removed")
