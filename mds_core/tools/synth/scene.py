"""The synthetic street world: road geometry, static structures, object and camera motion.

World frame (right-handed, metres)::

    origin  on the road centreline at arclength s = 0, on the road surface
    +X      the road direction at s = 0
    +Y      left of the road direction at s = 0
    +Z      up; the road is the plane Z = 0, gravity points to -Z

The road centreline is a smooth planar curve parameterised by arclength ``s`` with a smooth
curvature profile ``kappa(s)`` (sum of sinusoids bounded by ``max_curvature``). A point on
the ground has road coordinates ``(s, d)``: ``position = c(s) + d * n(s)`` with ``n`` the
left normal. Traffic drives on the right::

    d = -8.0            right parking lane (parked cars)
    d = -5.25           ego lane (camera, same-speed cars)
    d = -1.75           overtaking lane (faster cars)
    d = +1.75, +5.25    oncoming lanes
    d = +8.0            left parking lane
    |d| in [9, 12]      sidewalks (poles at |d| = 9.6), buildings beyond |d| = 12

With ``num_crossing``, ``num_pedestrians`` or ``num_cyclists`` the road has an intersection ahead
(:class:`Intersection`): a side street across the road (no buildings there), whose traffic moves
across the camera's heading, and a crosswalk before it; pedestrians also walk along the kerbs.
A drive that stops (``camera_stop_probability``) stands still before the crosswalk.

Object frame (``world_from_object``): origin at the centre of the box, +x forward (direction
of travel), +y left, +z up; the box's full extents ``(length, width, height)`` are along
``(x, y, z)``.

Camera frame (``world_from_camera``): OpenCV optical frame, x right, y down, z forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mds_core.tools.synth.config import SynthConfig

LANE_EGO = -5.25
LANE_OVERTAKE = -1.75
LANES_ONCOMING = (1.75, 5.25)
LANE_PARKING = 8.0
ROAD_HALF_WIDTH = 7.0
SIDEWALK_INNER = 9.0
SIDEWALK_OUTER = 12.0
POLE_OFFSET = 9.6

KIND_SAME_SPEED = "same_speed"
KIND_ONCOMING = "oncoming"
KIND_FASTER = "faster"
KIND_PARKED = "parked"
KIND_CROSSING = "crossing"
KIND_PEDESTRIAN = "pedestrian"
KIND_CYCLIST = "cyclist"

SIDE_STREET_HALF_WIDTH = 7.0  # the side street spans stations s_x +- this
SIDE_STREET_LANE = 2.5  # its two lanes at s_x -+ this (+d at s_x - lane, -d at s_x + lane)
SIDE_STREET_BIKE_LANE = 5.0
CROSSWALK = -9.0  # the crosswalk's station relative to s_x (on the camera's side)
STOP_LINE = -13.0  # where a stopping camera stands, relative to s_x

MATERIAL_BUILDING = 0
MATERIAL_POLE = 1
MATERIAL_CAR = 2

# Rotation from the OpenCV camera frame to a vehicle "body" frame (x fwd, y left, z up).
BODY_FROM_CAMERA = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _rot_z(angle: np.ndarray) -> np.ndarray:
    """Rotations about +Z by ``angle`` (any shape) as ``(..., 3, 3)``."""
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros(angle.shape + (3, 3))
    out[..., 0, 0] = c
    out[..., 0, 1] = -s
    out[..., 1, 0] = s
    out[..., 1, 1] = c
    out[..., 2, 2] = 1.0
    return out


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def make_transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform ``[R t; 0 1]``."""
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = translation
    return out


class Road:
    """Planar road centreline ``c(s)`` with heading ``theta(s)`` and curvature ``kappa(s)``.

    ``kappa(s) = sum_i a_i sin(2 pi s / L_i + phi_i)`` and ``theta(0) = 0`` analytically;
    ``c(s)`` is integrated on a 0.1 m grid (trapezoid rule) and linearly interpolated.
    """

    STEP = 0.1

    def __init__(self, rng: np.random.Generator, max_curvature: float, s_min: float, s_max: float):
        n_terms = 3
        weights = rng.uniform(0.3, 1.0, n_terms)
        self.amplitudes = max_curvature * weights / weights.sum()
        self.wavelengths = rng.uniform(180.0, 600.0, n_terms)
        self.phases = rng.uniform(0.0, 2.0 * np.pi, n_terms)
        self.s_min = float(s_min)
        self.s_max = float(s_max)
        n = int(np.ceil((s_max - s_min) / self.STEP)) + 1
        self.s_grid = s_min + self.STEP * np.arange(n)
        theta = self.heading(self.s_grid)
        # Integrate from s = 0 so that c(0) = 0 exactly (up to interpolation).
        dx = np.cos(theta)
        dy = np.sin(theta)
        cx = np.concatenate([[0.0], np.cumsum(0.5 * (dx[1:] + dx[:-1]) * self.STEP)])
        cy = np.concatenate([[0.0], np.cumsum(0.5 * (dy[1:] + dy[:-1]) * self.STEP)])
        x0 = np.interp(0.0, self.s_grid, cx)
        y0 = np.interp(0.0, self.s_grid, cy)
        self.x_grid = cx - x0
        self.y_grid = cy - y0
        self.heading_grid = theta
        self.cos_grid = np.cos(theta)
        self.sin_grid = np.sin(theta)
        self.curvature_grid = self.curvature(self.s_grid)

    def _omega(self) -> np.ndarray:
        return 2.0 * np.pi / self.wavelengths

    def curvature(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        w = self._omega()
        return np.sum(self.amplitudes * np.sin(s[..., None] * w + self.phases), axis=-1)

    def heading(self, s: np.ndarray) -> np.ndarray:
        """``theta(s)`` (rad, about +Z from +X), the integral of the curvature, theta(0) = 0."""
        s = np.asarray(s, dtype=np.float64)
        w = self._omega()
        a = self.amplitudes / w
        return np.sum(a * (np.cos(self.phases) - np.cos(s[..., None] * w + self.phases)), axis=-1)

    def position(self, s: np.ndarray) -> np.ndarray:
        """Centreline points ``(..., 2)`` (world X, Y)."""
        s = np.asarray(s, dtype=np.float64)
        return np.stack([np.interp(s, self.s_grid, self.x_grid), np.interp(s, self.s_grid, self.y_grid)], axis=-1)

    def frame(self, s: np.ndarray, d: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Point ``c(s) + d n(s)`` (``(..., 2)``) and heading ``theta(s)``."""
        s = np.asarray(s, dtype=np.float64)
        theta = self.heading(s)
        normal = np.stack([-np.sin(theta), np.cos(theta)], axis=-1)
        return self.position(s) + np.asarray(d, dtype=np.float64)[..., None] * normal, theta

    def sample(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, cos theta, sin theta, kappa)`` at stations ``s`` (linear interpolation)."""
        pos = np.clip((s - self.s_min) * (1.0 / self.STEP), 0.0, len(self.s_grid) - 1.000001)
        i = pos.astype(np.int64)
        f = pos - i
        out = []
        for table in (self.x_grid, self.y_grid, self.cos_grid, self.sin_grid, self.curvature_grid):
            a = table[i]
            out.append(a + f * (table[i + 1] - a))
        return out[0], out[1], out[2], out[3], out[4]

    def _newton(self, px: np.ndarray, py: np.ndarray, s: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
        """Newton steps on ``(p - c(s)) . t(s) = 0``; returns ``s`` and the last residual."""
        along = np.full(s.shape, np.inf)
        for _ in range(iterations):
            cx, cy, ct, st, kappa = self.sample(s)
            rx, ry = px - cx, py - cy
            along = rx * ct + ry * st
            lateral = ry * ct - rx * st
            denom = np.maximum(1.0 - kappa * lateral, 0.3)
            s = np.clip(s + np.clip(along / denom, -60.0, 60.0), self.s_min, self.s_max)
        return s, along

    def project(self, xy: np.ndarray, s_init: np.ndarray, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Road coordinates ``(s, d)`` of world points ``xy`` ``(N, 2)`` (see :meth:`project_with_tangent`)."""
        s, d, _, _ = self.project_with_tangent(xy, s_init, iterations)
        return s, d

    def project_with_tangent(
        self, xy: np.ndarray, s_init: np.ndarray, iterations: int = 3
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(s, d, cos theta(s), sin theta(s))`` of world points ``xy`` ``(N, 2)``.

        ``(s, d)`` are the road coordinates of the nearest centreline point.

        Newton's method on ``(p - c(s)) . t(s) = 0`` from ``s_init``; points where it has not
        converged (residual > 1 mm) are re-initialised by a coarse search over the whole
        road and refined again, so the result is (to < 1 mm) independent of ``s_init`` and
        the road texture does not depend on the viewpoint.
        """
        px, py = xy[:, 0], xy[:, 1]
        s, along = self._newton(px, py, np.clip(s_init, self.s_min, self.s_max), iterations)
        bad = np.flatnonzero(~(np.abs(along) < 1e-3))
        if bad.size:
            coarse = self.s_grid[:: int(round(2.0 / self.STEP))]
            cx = np.interp(coarse, self.s_grid, self.x_grid)
            cy = np.interp(coarse, self.s_grid, self.y_grid)
            best = np.empty(bad.size)
            for chunk in range(0, bad.size, 2048):
                sl = slice(chunk, chunk + 2048)
                dist = (px[bad[sl], None] - cx) ** 2 + (py[bad[sl], None] - cy) ** 2
                best[sl] = coarse[np.argmin(dist, axis=1)]
            s[bad], _ = self._newton(px[bad], py[bad], best, iterations + 3)
        cx, cy, ct, st, _ = self.sample(s)
        d = (py - cy) * ct - (px - cx) * st
        return s, d, ct, st


class SpeedProfile:
    """Smooth ego speed ``v(t) = v0 + sum_i a_i cos(2 pi t / P_i + phi_i)`` and its integral."""

    def __init__(self, rng: np.random.Generator, mean: float, variation: float):
        weights = rng.uniform(0.4, 1.0, 2)
        self.mean = mean
        self.amplitudes = variation * weights / weights.sum()
        self.periods = rng.uniform(6.0, 16.0, 2)
        self.phases = rng.uniform(0.0, 2.0 * np.pi, 2)

    def speed(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        w = 2.0 * np.pi / self.periods
        return self.mean + np.sum(self.amplitudes * np.cos(t[..., None] * w + self.phases), axis=-1)

    def distance(self, t: np.ndarray | float) -> np.ndarray:
        """``integral_0^t v``."""
        t = np.asarray(t, dtype=np.float64)
        w = 2.0 * np.pi / self.periods
        osc = self.amplitudes / w * (np.sin(t[..., None] * w + self.phases) - np.sin(self.phases))
        return self.mean * t + np.sum(osc, axis=-1)

    @property
    def max_speed(self) -> float:
        return float(self.mean + self.amplitudes.sum())

    def envelope(self, t: np.ndarray | float) -> np.ndarray:
        """How much of the drive's speed (and its body's rocking) is on at ``t``: always all of it."""
        return np.ones_like(np.asarray(t, dtype=np.float64))


class StoppingSpeedProfile(SpeedProfile):
    """A :class:`SpeedProfile` times an envelope that brakes to 0 over ``ramp`` s from ``start``, stands
    still for ``hold`` s and accelerates back over ``ramp`` s (half-cosine ramps: smooth speed)."""

    STEP = 0.005

    def __init__(self, base: SpeedProfile, start: float, ramp: float, hold: float):
        self.__dict__.update(base.__dict__)
        self.start, self.ramp, self.hold = float(start), float(ramp), float(hold)
        self.end = self.start + 2.0 * self.ramp + self.hold  # the envelope is 1 again from here
        first = min(0.0, self.start)  # a short drive may brake before its first frame
        grid = first + self.STEP * np.arange(int(np.ceil((self.end - first) / self.STEP)) + 2)
        speed = self.speed(grid)
        distance = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * self.STEP)])
        self._grid, self._distance = grid, distance - np.interp(0.0, grid, distance)  # 0 at t = 0

    def envelope(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        braking = np.clip((t - self.start) / self.ramp, 0.0, 1.0)
        starting = np.clip((t - self.start - self.ramp - self.hold) / self.ramp, 0.0, 1.0)
        return 0.5 * (1.0 + np.cos(np.pi * braking)) + 0.5 * (1.0 - np.cos(np.pi * starting))

    def speed(self, t: np.ndarray | float) -> np.ndarray:
        return super().speed(t) * self.envelope(t)

    def distance(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        first, last = self._grid[0], self._grid[-1]
        inside = np.interp(np.clip(t, first, last), self._grid, self._distance)
        # outside the grid the envelope is 1: the plain profile's distance from the grid's ends
        before = super().distance(np.minimum(t, first)) - super().distance(first)
        after = super().distance(np.maximum(t, last)) - super().distance(last)
        return inside + before + after


@dataclass
class Intersection:
    """A side street across the road at station ``station`` (its centre line), a crosswalk before it."""

    station: float
    camera_stops: bool


@dataclass
class MovingObject:
    """A car-sized rigid box that follows the road.

    Its road station is ``s(t) = s0 + speed * t`` (``speed`` signed: negative for oncoming
    traffic), or, for ``same_speed`` objects, the camera's station plus ``gap`` plus a slow
    oscillation of amplitude ``gap_jitter``. ``heading_flip`` turns it against the road.
    """

    object_id: int
    kind: str
    lane: float
    size: np.ndarray  # (length, width, height)
    s0: float = 0.0
    speed: float = 0.0
    gap: float = 0.0
    gap_jitter: float = 0.0
    gap_period: float = 10.0
    gap_phase: float = 0.0
    heading_flip: bool = False
    crosses: bool = False  # moves across the road at station s0: lateral offset d(t) = d0 + speed * t
    d0: float = 0.0
    color: np.ndarray = field(default_factory=lambda: np.ones(3))
    texture_seed: int = 0

    @property
    def moving(self) -> bool:
        return self.kind != KIND_PARKED

    def lateral(self, t: float) -> float:
        """The road coordinate ``d`` of a crossing object at time ``t``."""
        return self.d0 + self.speed * t


@dataclass
class StaticBoxes:
    """Static oriented boxes (buildings, poles): ``world_from_box = [R | centre]``."""

    centres: np.ndarray  # (N, 3)
    rotations: np.ndarray  # (N, 3, 3)
    half_sizes: np.ndarray  # (N, 3)
    materials: np.ndarray  # (N,) int MATERIAL_*
    colors: np.ndarray  # (N, 3) base colour in [0, 1]
    seeds: np.ndarray  # (N,) int texture seeds
    window_periods: np.ndarray  # (N, 2) facade window grid period (horizontal, vertical)


def _car_color(rng: np.random.Generator) -> np.ndarray:
    palette = np.array(
        [
            [0.75, 0.12, 0.10],
            [0.10, 0.25, 0.65],
            [0.85, 0.85, 0.82],
            [0.15, 0.15, 0.17],
            [0.55, 0.57, 0.60],
            [0.80, 0.60, 0.10],
            [0.15, 0.45, 0.25],
            [0.45, 0.20, 0.45],
        ]
    )
    base = palette[rng.integers(len(palette))]
    return np.clip(base * rng.uniform(0.85, 1.15, 3), 0.05, 0.95)


def _clothing_color(rng: np.random.Generator) -> np.ndarray:
    palette = np.array([[0.20, 0.22, 0.35], [0.55, 0.15, 0.15], [0.85, 0.80, 0.70], [0.12, 0.12, 0.12],
                        [0.25, 0.45, 0.30], [0.80, 0.55, 0.20]])
    return np.clip(palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.15, 3), 0.05, 0.95)


def _car_size(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.15:  # a van
        return np.array([rng.uniform(5.0, 5.6), rng.uniform(1.9, 2.05), rng.uniform(1.9, 2.3)])
    return np.array([rng.uniform(3.9, 4.9), rng.uniform(1.7, 1.95), rng.uniform(1.4, 1.65)])


def _spread_stations(rng: np.random.Generator, count: int, low: float, high: float, min_gap: float) -> np.ndarray:
    """``count`` sorted stations in ``[low, high]`` at least ``min_gap`` apart (deterministic)."""
    if count == 0:
        return np.zeros(0)
    span = max(high - low, (count - 1) * min_gap)
    free = span - (count - 1) * min_gap
    offsets = np.sort(rng.uniform(0.0, free, count))
    return low + offsets + min_gap * np.arange(count)


class Scene:
    """A complete deterministic world built from a :class:`SynthConfig`."""

    def __init__(self, config: SynthConfig):
        self.config = config
        rng = np.random.default_rng(np.random.SeedSequence([int(config.seed), 0x5EED]))
        self.speed_profile = SpeedProfile(rng, config.camera_speed, config.camera_speed_variation)
        duration = config.duration
        # Scenario time scale: short sequences still see traffic ahead, as in a long one.
        self.horizon = max(duration, 6.0)
        self.s_camera_start = 0.0
        s_end = float(self.speed_profile.distance(self.horizon)) + 20.0
        # Long enough for every object's whole trajectory (faster cars start behind the
        # camera, oncoming ones far ahead) plus the view distance.
        self.road = Road(rng, config.max_curvature, s_min=-200.0 - 25.0 * self.horizon, s_max=s_end + 600.0 + 15.0 * self.horizon)
        self.pitch_amp = np.deg2rad(config.camera_pitch_deg)
        self.roll_amp = np.deg2rad(config.camera_roll_deg)
        self.attitude_periods = rng.uniform(2.0, 5.0, 2)
        self.attitude_phases = rng.uniform(0.0, 2.0 * np.pi, 2)
        # The intersection's random choices come from a stream of their own: without it, a seed's scene
        # is the one it always was.
        extra = np.random.default_rng(np.random.SeedSequence([int(config.seed), 0x5EED, 1]))
        self.intersection = self._plan_intersection(extra)
        self.static = self._build_static(rng)
        self.objects = self._build_objects(rng)
        if self.intersection is not None:
            if self.intersection.camera_stops:  # first at the stop line: nobody it follows stands in the way
                self.objects = [o for o in self.objects if o.kind != KIND_SAME_SPEED]
            self._add_intersection_traffic(extra)

    # ---------------------------------------------------------------- static world
    def _build_static(self, rng: np.random.Generator) -> StaticBoxes:
        centres, rotations, halves, materials, colors, seeds, periods = [], [], [], [], [], [], []
        on_street: list[bool] = []
        road = self.road
        lo, hi = road.s_min + 5.0, road.s_max - 5.0
        for side in (-1.0, 1.0):
            s = lo + rng.uniform(0.0, 10.0)
            while s < hi:
                length = rng.uniform(8.0, 30.0)
                depth = rng.uniform(8.0, 16.0)
                height = rng.uniform(5.0, 24.0)
                setback = SIDEWALK_OUTER + rng.uniform(0.0, 2.5)
                s_mid = s + 0.5 * length
                xy, theta = road.frame(np.array(s_mid), side * (setback + 0.5 * depth))
                centres.append([xy[0], xy[1], 0.5 * height])
                rotations.append(_rot_z(theta))
                halves.append([0.5 * length, 0.5 * depth, 0.5 * height])
                materials.append(MATERIAL_BUILDING)
                tint = rng.uniform(0.0, 1.0)
                base = (1 - tint) * np.array([0.72, 0.66, 0.58]) + tint * np.array([0.62, 0.40, 0.32])
                colors.append(np.clip(base * rng.uniform(0.75, 1.15, 3), 0.1, 0.95))
                seeds.append(int(rng.integers(1, 2**30)))
                periods.append([rng.uniform(2.6, 4.0), rng.uniform(2.9, 3.6)])
                gap = rng.uniform(3.0, 14.0) if rng.random() < 0.3 else rng.uniform(0.0, 1.0)
                on_street.append(self._on_side_street(s, s + length))
                s += length + gap
            s = lo + rng.uniform(0.0, 20.0)
            while s < hi:
                xy, theta = road.frame(np.array(s), side * POLE_OFFSET)
                centres.append([xy[0], xy[1], 3.0])
                rotations.append(_rot_z(theta))
                halves.append([0.15, 0.15, 3.0])
                materials.append(MATERIAL_POLE)
                colors.append(np.array([0.45, 0.47, 0.50]) * rng.uniform(0.8, 1.2))
                seeds.append(int(rng.integers(1, 2**30)))
                periods.append([1.0, 1.0])
                on_street.append(self._on_side_street(s - 0.5, s + 0.5))
                s += rng.uniform(22.0, 40.0)
        # the side street's buildings and poles give way; all were drawn, so the others stay as they were
        keep = ~np.array(on_street, dtype=bool)
        return StaticBoxes(
            centres=np.asarray(centres, dtype=np.float64)[keep],
            rotations=np.asarray(rotations, dtype=np.float64)[keep],
            half_sizes=np.asarray(halves, dtype=np.float64)[keep],
            materials=np.asarray(materials, dtype=np.int32)[keep],
            colors=np.asarray(colors, dtype=np.float64)[keep],
            seeds=np.asarray(seeds, dtype=np.int64)[keep],
            window_periods=np.asarray(periods, dtype=np.float64)[keep],
        )

    # ---------------------------------------------------------------- objects
    def _build_objects(self, rng: np.random.Generator) -> list[MovingObject]:
        cfg = self.config
        objects: list[MovingObject] = []
        horizon = self.horizon
        s_cam = self.camera_station

        def new(kind: str, lane: float) -> MovingObject:
            obj = MovingObject(
                object_id=len(objects) + 1,
                kind=kind,
                lane=lane,
                size=_car_size(rng),
                color=_car_color(rng),
                texture_seed=int(rng.integers(1, 2**30)),
            )
            objects.append(obj)
            return obj

        # Same speed as the camera, ahead in the ego lane (a platoon; the first is the leader).
        gap = rng.uniform(10.0, 16.0)
        for _ in range(cfg.num_same_speed):
            obj = new(KIND_SAME_SPEED, LANE_EGO)
            obj.gap = gap
            obj.gap_jitter = cfg.same_speed_gap_jitter * rng.uniform(0.5, 1.0)
            obj.gap_period = rng.uniform(6.0, 12.0)
            obj.gap_phase = rng.uniform(0.0, 2.0 * np.pi)
            gap += obj.size[0] + rng.uniform(6.0, 14.0)

        # Faster cars in the overtaking lane: all at one speed so they never collide.
        if cfg.num_faster:
            speed = self.speed_profile.max_speed + rng.uniform(3.0, 6.0)
            times = _spread_stations(rng, cfg.num_faster, 0.1 * horizon, 0.9 * horizon, 12.0 / speed)
            for tau in times:
                obj = new(KIND_FASTER, LANE_OVERTAKE)
                obj.speed = speed
                obj.s0 = float(s_cam(tau)) - speed * tau  # alongside the camera at t = tau
            self._separate_lane([o for o in objects if o.kind == KIND_FASTER], min_gap=10.0)

        # Oncoming cars: one speed per lane; they meet the camera at spread-out times.
        if cfg.num_oncoming:
            lane_speeds = {lane: rng.uniform(8.0, 13.0) for lane in LANES_ONCOMING}
            times = _spread_stations(rng, cfg.num_oncoming, 0.25 * horizon, 1.1 * horizon, 0.3)
            for tau in times:
                lane = LANES_ONCOMING[int(rng.integers(len(LANES_ONCOMING)))]
                obj = new(KIND_ONCOMING, lane)
                obj.speed = -lane_speeds[lane]
                obj.heading_flip = True
                obj.s0 = float(s_cam(tau)) + lane_speeds[lane] * tau
            for lane in LANES_ONCOMING:
                self._separate_lane([o for o in objects if o.kind == KIND_ONCOMING and o.lane == lane], 10.0)

        # Parked cars on both sides, along the stretch the camera drives past and beyond.
        if cfg.num_parked:
            s_lo = float(s_cam(0.0)) + 4.0
            s_hi = float(s_cam(self.config.duration)) + 70.0
            sides = rng.integers(0, 2, cfg.num_parked)
            for side in (0, 1):
                count = int(np.sum(sides == side))
                for s in _spread_stations(rng, count, s_lo, s_hi, 7.0):
                    obj = new(KIND_PARKED, LANE_PARKING if side else -LANE_PARKING)
                    obj.s0 = float(s)
                    obj.heading_flip = bool(side) and rng.random() < 0.5
        return objects

    # ---------------------------------------------------------------- the intersection
    def _plan_intersection(self, rng: np.random.Generator) -> Intersection | None:
        """Where the side street crosses, and whether (and when) the camera stops before it."""
        cfg = self.config
        stops = bool(rng.random() < cfg.camera_stop_probability)
        if not (cfg.num_crossing or cfg.num_pedestrians or cfg.num_cyclists or stops):
            return None
        duration = max(cfg.duration, 1.0)
        if stops:  # standing still in the middle of the drive (braking before its first frame if it is short)
            ramp = 2.0
            start = 0.5 * duration - 0.5 * cfg.camera_stop_seconds - ramp
            self.speed_profile = StoppingSpeedProfile(self.speed_profile, start, ramp, cfg.camera_stop_seconds)
            station = float(self.camera_station(start + ramp)) - STOP_LINE
        else:  # the camera reaches the crosswalk towards the end of the drive: the traffic is in view
            station = float(self.camera_station(0.8 * duration)) + rng.uniform(15.0, 30.0)
        return Intersection(station=station, camera_stops=stops)

    def _on_side_street(self, s_from: float, s_to: float) -> bool:
        if self.intersection is None:
            return False
        margin = SIDE_STREET_HALF_WIDTH + 1.0
        return s_to > self.intersection.station - margin and s_from < self.intersection.station + margin

    def _add_intersection_traffic(self, rng: np.random.Generator) -> None:
        """Cars and cyclists crossing on the side street, pedestrians at the crosswalk and on the kerbs."""
        cfg, x = self.config, self.intersection.station
        window = max(cfg.duration, 3.0)  # crossings happen while the camera looks
        objects = self.objects

        def new(kind: str, size: np.ndarray, color: np.ndarray) -> MovingObject:
            next_id = max((o.object_id for o in objects), default=0) + 1
            obj = MovingObject(object_id=next_id, kind=kind, lane=0.0, size=size, color=color,
                               texture_seed=int(rng.integers(1, 2**30)))
            objects.append(obj)
            return obj

        def cross(obj: MovingObject, station: float, speed: float, at_centre: float) -> None:
            """``obj`` crosses the road at ``station``, reaching the centre line at time ``at_centre``."""
            obj.crosses, obj.s0, obj.speed = True, station, speed
            obj.d0 = -speed * self._clear_of_camera(station, speed, at_centre)

        for lane, count in ((-1, (cfg.num_crossing + 1) // 2), (1, cfg.num_crossing // 2)):
            speed = -lane * rng.uniform(3.0, 12.0)  # one speed per lane: no car catches up with another
            times = _spread_stations(rng, count, 0.1 * window, 0.9 * window, 10.0 / abs(speed))
            for tau in times:
                cross(new(KIND_CROSSING, _car_size(rng), _car_color(rng)), x + lane * SIDE_STREET_LANE, speed, tau)
        for _ in range(cfg.num_cyclists):
            lane = -1 if rng.random() < 0.5 else 1
            size = np.array([rng.uniform(1.7, 1.9), 0.6, rng.uniform(1.6, 1.8)])
            cross(new(KIND_CYCLIST, size, _car_color(rng)), x + lane * SIDE_STREET_BIKE_LANE,
                  -lane * rng.uniform(4.0, 7.0), rng.uniform(0.1, 0.9) * window)
        for _ in range(cfg.num_pedestrians):
            size = np.array([rng.uniform(0.45, 0.6), rng.uniform(0.5, 0.65), rng.uniform(1.55, 1.9)])
            pedestrian = new(KIND_PEDESTRIAN, size, _clothing_color(rng))
            speed = (1 if rng.random() < 0.5 else -1) * rng.uniform(1.0, 1.8)
            if rng.random() < 0.5:  # crossing at the crosswalk
                cross(pedestrian, x + CROSSWALK + rng.uniform(-1.5, 1.5), speed, rng.uniform(0.1, 0.9) * window)
            else:  # walking along a kerb, somewhere the camera sees
                pedestrian.lane = (1 if rng.random() < 0.5 else -1) * rng.uniform(10.2, 11.5)
                pedestrian.s0 = float(self.camera_station(0.0)) + rng.uniform(12.0, 40.0 + 5.0 * window)
                pedestrian.speed, pedestrian.heading_flip = speed, speed < 0

    def _clear_of_camera(self, station: float, speed: float, at_centre: float) -> float:
        """``at_centre``, moved later where the crossing object would meet the camera in its lane."""
        t_lane = at_centre + LANE_EGO / speed  # when the object is in the camera's lane
        grid = np.linspace(0.0, self.horizon + 10.0, 2001)
        near = np.abs(self.camera_station(grid) - station) < 4.0
        if near.any() and np.min(np.abs(grid[near] - t_lane)) < 1.5:
            return at_centre + 3.0 + float(np.max(grid[near]) - np.min(grid[near]))
        return at_centre

    @staticmethod
    def _separate_lane(lane_objects: list[MovingObject], min_gap: float) -> None:
        """Push same-lane, same-speed objects apart so that their boxes never overlap."""
        lane_objects.sort(key=lambda o: o.s0)
        for prev, cur in zip(lane_objects, lane_objects[1:]):
            need = 0.5 * (prev.size[0] + cur.size[0]) + min_gap * 0.5
            if cur.s0 - prev.s0 < need:
                cur.s0 = prev.s0 + need

    # ---------------------------------------------------------------- motion
    def camera_station(self, t: np.ndarray | float) -> np.ndarray:
        """Road station ``s`` of the camera at time ``t``."""
        return self.s_camera_start + self.speed_profile.distance(t)

    def camera_turn(self, t: float) -> float:
        """The camera's extra heading (rad) at time ``t``: 0, then a smooth (cosine) turn by
        ``camera_turn_degrees`` over ``camera_turn_seconds`` centred in the drive, then the full turn."""
        cfg = self.config
        if cfg.camera_turn_degrees == 0:
            return 0.0
        start = 0.5 * cfg.duration - 0.5 * cfg.camera_turn_seconds
        progress = float(np.clip((t - start) / cfg.camera_turn_seconds, 0.0, 1.0))
        return float(np.radians(cfg.camera_turn_degrees) * 0.5 * (1.0 - np.cos(np.pi * progress)))

    def camera_pose(self, t: float) -> np.ndarray:
        """``world_from_camera`` (4x4) at time ``t`` (OpenCV optical frame)."""
        s = float(self.camera_station(t))
        xy, theta = self.road.frame(np.array(s), LANE_EGO)
        rocking = float(self.speed_profile.envelope(t))  # a car standing still does not pitch or roll
        pitch = rocking * self.pitch_amp * np.sin(2.0 * np.pi * t / self.attitude_periods[0] + self.attitude_phases[0])
        roll = rocking * self.roll_amp * np.sin(2.0 * np.pi * t / self.attitude_periods[1] + self.attitude_phases[1])
        world_from_body = _rot_z(theta + self.camera_turn(t)) @ _rot_y(pitch) @ _rot_x(roll)
        position = np.array([xy[0], xy[1], self.config.camera_height])
        return make_transform(world_from_body @ BODY_FROM_CAMERA, position)

    def object_station(self, obj: MovingObject, t: float) -> float:
        if obj.kind == KIND_SAME_SPEED:
            osc = obj.gap_jitter * np.sin(2.0 * np.pi * t / obj.gap_period + obj.gap_phase)
            return float(self.camera_station(t)) + obj.gap + float(osc)
        return obj.s0 + obj.speed * t

    def object_pose(self, obj: MovingObject, t: float) -> np.ndarray:
        """``world_from_object`` (4x4) at time ``t``: box centre, x along travel, z up."""
        if obj.crosses:
            xy, theta = self.road.frame(np.array(obj.s0), obj.lateral(t))
            theta = theta + (0.5 * np.pi if obj.speed >= 0 else -0.5 * np.pi)
            return make_transform(_rot_z(theta), np.array([xy[0], xy[1], 0.5 * obj.size[2]]))
        s = self.object_station(obj, t)
        xy, theta = self.road.frame(np.array(s), obj.lane)
        if obj.heading_flip:
            theta = theta + np.pi
        return make_transform(_rot_z(theta), np.array([xy[0], xy[1], 0.5 * obj.size[2]]))
