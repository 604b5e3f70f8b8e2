"""Visual odometry from the ego-motion, and its evaluation against ground-truth poses.

The motion model's ego-motion of frame ``t`` (the background component's rigid motion, or the
scene flow's ego-pose) moves points from camera ``t-1`` to camera ``t``: ``X_t = T_t X_{t-1}``.
Chained, the camera poses are ``world_from_camera_t = world_from_camera_{t-1} T_t^-1``
(:func:`chain_poses`), in depth units (times a metric scale when one is known).

Evaluation (:func:`evaluate_trajectory`), as the TUM RGB-D benchmark defines it:

* ATE: the root mean square of the position errors after aligning the estimate to the ground truth
  with Umeyama's method (:func:`umeyama_alignment`): Sim(3) for an estimate without metric scale,
  SE(3) for a metric one (the camera-height scale);
* RPE: the error of the relative motion between consecutive frames, translation (RMSE, in the
  ground truth's units, after the alignment's scale) and rotation (RMSE of the angle, degrees).

Trajectories are written and read in the TUM format (``timestamp tx ty tz qx qy qz qw``) and the
KITTI odometry format (12 numbers per line: the top 3x4 of each pose).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mds_core.method.geometry import quaternion
from mds_core.method.geometry.quaternion import shepperd

if TYPE_CHECKING:
    from mds_core.data.sequence_folder import FrameSequence
    from mds_core.inference.predictor import Predictor


def chain_poses(motions: list[np.ndarray | None]) -> list[np.ndarray]:
    """``world_from_camera`` of every frame from the per-frame ego-motions (``motions[0]`` is ignored:
    the first camera is the world frame). A missing motion (a reset) repeats the previous pose."""
    poses = [np.eye(4)]
    for motion in motions[1:]:
        step = np.eye(4) if motion is None else np.linalg.inv(np.asarray(motion, dtype=np.float64))
        poses.append(poses[-1] @ step)
    return poses


@dataclass(frozen=True)
class Trajectory:
    """The camera's ``world_from_camera`` at every frame of a sequence (the first at the identity), and the
    frames whose metric scale was unknown (no ground plane seen; only with a camera height)."""

    poses: list[np.ndarray]
    frames_without_scale: int = 0


def sequence_trajectory(predictor: Predictor, sequence: FrameSequence, camera_height: float | None = None,
                        camera_pitch: float = 0.0) -> Trajectory:
    """Visual odometry over a whole sequence: each frame's ego-motion against the frame before, chained;
    in depth units, or in metres with ``camera_height`` (the ground plane's distance in each depth map,
    smoothed over the sequence: :mod:`mds_core.method.metric_scale`; ``camera_pitch`` in degrees, down)."""
    from mds_core.method.metric_scale import ScaleTracker, camera_height_scale

    intrinsics, _ = sequence.intrinsics()
    tracker = ScaleTracker()
    poses, previous = [np.eye(4)], None
    for index in range(len(sequence)):
        image = sequence.image(index)
        if previous is not None:
            oracle = None if predictor.model.uses_depth_network else sequence.depth(index)  # the GT-depth rung
            prediction = predictor.predict(image, intrinsics, previous, ground_truth_depth=oracle, motion_scores=False)
            step = np.array(prediction.ego_motion, dtype=np.float64)
            if camera_height is not None:
                static = None if prediction.moving_probability is None else prediction.moving_probability < 0.5
                scale = tracker.update(camera_height_scale(prediction.depth, prediction.intrinsics, camera_height,
                                                           camera_pitch, static=static))
                step[:3, 3] *= np.nan if scale is None else scale
            poses.append(poses[-1] @ np.linalg.inv(step))
        previous = image
    return Trajectory(poses, tracker.failures if camera_height is not None else 0)


def straight_line(count: int) -> list[np.ndarray]:
    """``count`` poses driving straight ahead at constant speed, never turning: the trivial odometry that an
    estimate must beat (under Sim(3) alignment its speed and heading are fitted to the ground truth)."""
    poses = [np.eye(4) for _ in range(count)]
    for index, pose in enumerate(poses):
        pose[2, 3] = float(index)
    return poses


def scaled_poses(poses: list[np.ndarray], scale: float) -> list[np.ndarray]:
    """The poses with their translations multiplied by ``scale`` (depth units -> metres)."""
    out = []
    for pose in poses:
        scaled = np.array(pose, dtype=np.float64)
        scaled[:3, 3] *= scale
        out.append(scaled)
    return out


def umeyama_alignment(source: np.ndarray, target: np.ndarray, with_scale: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """``(s, R, t)`` minimising ``sum |target_i - (s R source_i + t)|^2`` for ``(N, 3)`` point sets
    (Umeyama 1991); ``s = 1`` without ``with_scale``."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    xs, xt = source - mu_s, target - mu_t
    covariance = xt.T @ xs / len(source)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rotation = u @ sign @ vt
    variance = (xs**2).sum() / len(source)
    scale = float(np.trace(np.diag(d) @ sign) / variance) if with_scale and variance > 0 else 1.0
    translation = mu_t - scale * rotation @ mu_s
    return scale, rotation, translation


def _angle_degrees(rotation: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))))


@dataclass
class TrajectoryErrors:
    alignment: str  # "sim3" or "se3"
    frames: int
    scale: float  # the alignment's scale (1 for se3)
    ate_rmse: float  # ground-truth units
    rpe_translation_rmse: float  # ground-truth units per frame step
    rpe_rotation_rmse_deg: float
    path_length: float  # of the ground truth, for reference

    def to_text(self) -> str:
        return (f"{self.frames} frames, {self.alignment} alignment (scale {self.scale:.4g}): ATE {self.ate_rmse:.4f}, "
                f"RPE translation {self.rpe_translation_rmse:.4f} / frame, rotation {self.rpe_rotation_rmse_deg:.4f} "
                f"deg / frame; ground-truth path {self.path_length:.2f}")


def evaluate_trajectory(estimate: list[np.ndarray], ground_truth: list[np.ndarray], alignment: str = "sim3",
                        ) -> tuple[TrajectoryErrors, list[np.ndarray]]:
    """ATE and RPE of ``estimate`` against ``ground_truth`` (equal-length lists of 4x4
    ``world_from_camera``); also returns the aligned estimate."""
    if len(estimate) != len(ground_truth) or len(estimate) < 2:
        raise ValueError(f"need two trajectories of equal length >= 2, got {len(estimate)} and {len(ground_truth)}")
    if alignment not in ("sim3", "se3"):
        raise ValueError(f"alignment must be sim3 or se3, got {alignment!r}")
    est = np.stack([p[:3, 3] for p in estimate])
    gt = np.stack([p[:3, 3] for p in ground_truth])
    scale, rotation, translation = umeyama_alignment(est, gt, with_scale=alignment == "sim3")
    aligned = []
    for pose in estimate:
        out = np.eye(4)
        out[:3, :3] = rotation @ pose[:3, :3]
        out[:3, 3] = scale * rotation @ pose[:3, 3] + translation
        aligned.append(out)
    ate = float(np.sqrt(np.mean(np.sum((np.stack([p[:3, 3] for p in aligned]) - gt) ** 2, axis=1))))
    translation_errors, rotation_errors = [], []
    for i in range(1, len(aligned)):
        step_est = np.linalg.inv(aligned[i - 1]) @ aligned[i]
        step_gt = np.linalg.inv(ground_truth[i - 1]) @ ground_truth[i]
        error = np.linalg.inv(step_gt) @ step_est
        translation_errors.append(np.linalg.norm(error[:3, 3]))
        rotation_errors.append(_angle_degrees(error[:3, :3]))
    path = float(np.sum(np.linalg.norm(np.diff(gt, axis=0), axis=1)))
    errors = TrajectoryErrors(alignment, len(estimate), scale, ate,
                              float(np.sqrt(np.mean(np.square(translation_errors)))),
                              float(np.sqrt(np.mean(np.square(rotation_errors)))), path)
    return errors, aligned


# ------------------------------------------------------------------------------------------- files
def write_tum(path: Path, stamps: list[float], poses: list[np.ndarray]) -> Path:
    lines = [f"{t:.9f} " + " ".join(f"{v:.9g}" for v in (*p[:3, 3], *shepperd(p[:3, :3].tolist())))
             for t, p in zip(stamps, poses)]
    path.write_text("# timestamp tx ty tz qx qy qz qw (world_from_camera, camera: x right, y down, z forward)\n"
                    + "\n".join(lines) + "\n")
    return path


def write_kitti(path: Path, poses: list[np.ndarray]) -> Path:
    path.write_text("\n".join(" ".join(f"{v:.9g}" for v in p[:3, :4].reshape(-1)) for p in poses) + "\n")
    return path


def read_trajectory(path: str | Path) -> tuple[list[float] | None, list[np.ndarray]]:
    """A TUM (8 numbers per line) or KITTI odometry (12 per line) trajectory file, or a sequence
    folder's ``poses.json`` (or the folder itself): ``(timestamps or None, world_from_camera poses)``."""
    path = Path(path)
    if path.is_dir():
        path = path / "poses.json"
    if not path.is_file():
        raise FileNotFoundError(f"trajectory {path} does not exist")
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        try:
            poses = [np.asarray(p, dtype=np.float64) for p in data["camera_poses"]]
            stamps = [t * 1e-9 for t in data["timestamps_ns"]]
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path} has no camera_poses/timestamps_ns") from error
        return stamps, poses
    rows = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if rows and all(len(r) == 8 for r in rows):
        values = np.asarray(rows, dtype=np.float64)
        poses = []
        for row in values:
            pose = np.eye(4)
            pose[:3, :3], pose[:3, 3] = quaternion.rotation(row[4:8]), row[1:4]
            poses.append(pose)
        return list(values[:, 0]), poses
    if rows and all(len(r) == 12 for r in rows):
        poses = []
        for row in np.asarray(rows, dtype=np.float64):
            pose = np.eye(4)
            pose[:3, :4] = row.reshape(3, 4)
            poses.append(pose)
        return None, poses
    raise ValueError(f"{path}: expected TUM (8 numbers a line) or KITTI (12 numbers a line) poses")


def trajectory_plot(ground_truth: list[np.ndarray], estimate: list[np.ndarray], title: str = "") -> np.ndarray:
    """A top view of both trajectories (the two world axes along which the ground truth spreads most:
    the ground plane of a drive), RGB uint8."""
    import cv2

    size, margin = 480, 30
    gt_xyz = np.stack([p[:3, 3] for p in ground_truth])
    axes = sorted(np.argsort(np.ptp(gt_xyz, axis=0))[1:])  # drop the axis with the least extent (up)
    gt = gt_xyz[:, axes]
    est = np.stack([p[:3, 3] for p in estimate])[:, axes]
    everything = np.concatenate([gt, est])
    low, high = everything.min(axis=0), everything.max(axis=0)
    span = max(float((high - low).max()), 1e-9)

    def pixels(xz: np.ndarray) -> np.ndarray:
        uv = (xz - (low + high) / 2) / span * (size - 2 * margin) + size / 2  # centred, equal axes
        return np.stack([uv[:, 0], size - uv[:, 1]], axis=1).astype(np.int32)

    image = np.full((size, size, 3), 255, np.uint8)
    cv2.polylines(image, [pixels(gt)], False, (40, 40, 40), 2, cv2.LINE_AA)
    cv2.polylines(image, [pixels(est)], False, (220, 40, 40), 2, cv2.LINE_AA)
    cv2.putText(image, "ground truth", (10, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
    cv2.putText(image, "estimate", (130, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (220, 40, 40), 1, cv2.LINE_AA)
    if title:
        cv2.putText(image, title, (10, size - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return image


@dataclass
class OdometryStep:
    """The camera's pose after one frame and its velocity over the step (in the camera frame)."""

    pose: np.ndarray  # 4x4 world_from_camera
    linear: tuple[float, float, float]  # units per second
    angular: tuple[float, float, float]  # rad per second (rotation vector of the step over its duration)
    segment: int  # increases at every reset of the stream


class OdometryChain:
    """Visual odometry on a stream: chains each frame's ego-motion (``X_t = T X_{t-1}``) into the
    camera pose. A frame without an ego-motion (a stream reset) starts a new segment at the same pose
    instead of jumping."""

    def __init__(self):
        self._rows = np.eye(4)[:3].tolist()  # the top three rows of world_from_camera, in plain floats
        self.segment = 0

    @property
    def pose(self) -> np.ndarray:
        """The camera's pose now: ``(4, 4)`` world_from_camera (a new array)."""
        return np.array([*self._rows, [0.0, 0.0, 0.0, 1.0]])

    def reset(self) -> None:
        self.segment += 1

    def add(self, motion: np.ndarray, seconds: float) -> OdometryStep:
        """``motion``: the ego-motion from the previous camera to this one (its translation in the
        units wanted); ``seconds`` since the previous frame.

        The motion's rotation enters as the exact rotation of its quaternion (a network's float32
        rotation is orthonormal to about 1e-7; chained, such errors would add up frame after frame).
        Plain floats: this runs right after the networks, when NumPy's code is out of the caches (a
        NumPy call then takes about 10 us).
        """
        (a, b, c, tx), (d, e, f, ty), (g, h, i, tz) = np.asarray(motion, dtype=np.float64)[:3].tolist()
        x, y, z, w = shepperd(((a, b, c), (d, e, f), (g, h, i)))
        inverse = (-x, -y, -z, w)  # this camera in the previous one: the rigid inverse (R^T, -R^T t)
        rows = quaternion.rotation(inverse)
        step = [[*row, -(row[0] * tx + row[1] * ty + row[2] * tz)] for row in rows]
        self._rows = [[p[0] * step[0][col] + p[1] * step[1][col] + p[2] * step[2][col] + (p[3] if col == 3 else 0.0)
                       for col in range(4)] for p in self._rows]  # pose @ step
        dt = max(float(seconds), 1e-9)
        # the displacement seen from this camera, R (-R^T t) = -t; a rotation's vector is the same in both frames
        wx, wy, wz = quaternion.rotation_vector(inverse)
        return OdometryStep(self.pose, (-tx / dt, -ty / dt, -tz / dt), (wx / dt, wy / dt, wz / dt), self.segment)
