"""Configuration of the synthetic street-scene generator.

Everything the generator does is a deterministic function of one :class:`SynthConfig`
(the integer ``seed`` drives all random choices of the scene layout), so a config plus the
code version fully identifies a sequence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

#: Named kinds of scene (``SynthConfig`` fields): the road's traffic only, or a city drive with an
#: intersection, crossing traffic, pedestrians and cyclists, and drives that stop before it.
SCENES: dict[str, dict[str, Any]] = {
    "road": {},
    "city": {"num_crossing": 3, "num_pedestrians": 4, "num_cyclists": 1, "camera_stop_probability": 0.3},
}


@dataclass
class SynthConfig:
    """Parameters of one synthetic sequence.

    Units: metres, seconds, metres per second, radians only where a name says ``_rad``
    (angles given to users are in degrees, ``_deg``).

    Intrinsics follow KITTI's size-normalised convention: ``fx = fx_ratio * width``,
    ``fy = fy_ratio * height``, ``cx = cx_ratio * width``, ``cy = cy_ratio * height``, with
    pixel centres at integer coordinates (the ``mds_core.method.geometry`` convention).
    """

    width: int = 320
    height: int = 96
    num_frames: int = 100
    fps: float = 10.0
    seed: int = 0

    # Camera matrix, as fractions of the image size (KITTI-like defaults).
    fx_ratio: float = 0.58
    fy_ratio: float = 1.92
    cx_ratio: float = 0.5
    cy_ratio: float = 0.5

    # Ego camera motion.
    camera_height: float = 1.5  # optical centre above the road
    camera_speed: float = 10.0  # mean speed along the road
    camera_speed_variation: float = 3.0  # amplitude of the smooth speed profile
    camera_pitch_deg: float = 0.5  # amplitude of a slow pitch oscillation
    camera_roll_deg: float = 0.3  # amplitude of a slow roll oscillation
    max_curvature: float = 1.0 / 80.0  # bound on |road curvature| (1/m): yaw rate <= v * this

    # Independently moving rigid objects (car-sized oriented boxes). All follow the road.
    num_same_speed: int = 2  # ahead in the ego lane, at (about) the camera's own speed
    num_oncoming: int = 3  # in the opposite lanes
    num_faster: int = 2  # in the neighbouring lane, overtaking the camera
    num_parked: int = 6  # static movable objects in the parking lanes
    same_speed_gap_jitter: float = 0.5  # amplitude (m) of the slow gap oscillation of same-speed cars

    # An intersection ahead, with traffic that does not follow the road (see scene.Intersection).
    num_crossing: int = 0  # cars crossing the road on the side street, across the camera's heading (3-12 m/s)
    num_pedestrians: int = 0  # crossing at the crosswalk or walking along the kerb (1-1.8 m/s)
    num_cyclists: int = 0  # crossing on the side street (4-7 m/s)
    # A drive that decelerates, stands still (at the intersection's stop line) and starts again.
    camera_stop_probability: float = 0.0  # chance that a drive (a seed) stops
    camera_stop_seconds: float = 3.0  # how long it stands still
    # A camera that turns at the intersection: its heading turns by this many degrees (left > 0) over
    # camera_turn_seconds in the middle of the drive, on top of the road's heading; while the camera
    # stands, it turns on the spot (a robot turning at a crossing).
    camera_turn_degrees: float = 0.0
    camera_turn_seconds: float = 2.0

    # Rendering.
    max_depth: float = 1000.0  # ground farther than this along the optical axis is sky
    sensor_noise: float = 0.0  # std of additive Gaussian noise on the [0, 1] image scale
    start_time_ns: int = 1_700_000_000_000_000_000  # timestamp of frame 0 (ns since epoch)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for parameters the generator cannot honour."""
        if self.width < 2 or self.height < 2:
            raise ValueError(f"image size must be at least 2x2, got {self.width}x{self.height}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.num_frames < 0:
            raise ValueError(f"num_frames must be >= 0, got {self.num_frames}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if not self.camera_speed > 0:
            raise ValueError(f"camera_speed must be > 0, got {self.camera_speed}")
        if not 0 <= self.camera_speed_variation < self.camera_speed:
            raise ValueError("camera_speed_variation must be in [0, camera_speed)")
        if self.camera_height <= 0:
            raise ValueError("camera_height must be > 0")
        for name in ("num_same_speed", "num_oncoming", "num_faster", "num_parked", "num_crossing", "num_pedestrians",
                     "num_cyclists"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 0.0 <= self.camera_stop_probability <= 1.0:
            raise ValueError(f"camera_stop_probability must be in [0, 1], got {self.camera_stop_probability}")
        if self.camera_stop_seconds < 0:
            raise ValueError(f"camera_stop_seconds must be >= 0, got {self.camera_stop_seconds}")
        if not -180.0 <= self.camera_turn_degrees <= 180.0:
            raise ValueError(f"camera_turn_degrees must be in [-180, 180], got {self.camera_turn_degrees}")
        if not self.camera_turn_seconds > 0:
            raise ValueError(f"camera_turn_seconds must be > 0, got {self.camera_turn_seconds}")
        if self.max_curvature < 0:
            raise ValueError("max_curvature must be >= 0")
        if self.max_depth <= 0:
            raise ValueError("max_depth must be > 0")
        if self.sensor_noise < 0:
            raise ValueError("sensor_noise must be >= 0")

    @property
    def duration(self) -> float:
        """Time (s) between the first and the last frame."""
        return max(self.num_frames - 1, 0) / self.fps

    def timestamp_ns(self, index: int) -> int:
        """Timestamp of frame ``index``: ``start_time_ns + round(index * 1e9 / fps)``."""
        return int(self.start_time_ns + round(index * 1e9 / self.fps))

    def intrinsics(self) -> np.ndarray:
        """The 3x3 camera matrix ``K`` (float64)."""
        return np.array(
            [
                [self.fx_ratio * self.width, 0.0, self.cx_ratio * self.width],
                [0.0, self.fy_ratio * self.height, self.cy_ratio * self.height],
                [0.0, 0.0, 1.0],
            ],
            dtype=np.float64,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthConfig:
        """Build a config from :meth:`to_dict` output; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
