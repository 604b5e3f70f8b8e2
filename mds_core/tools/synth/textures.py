"""Procedural, footprint-filtered textures evaluated in surface-local coordinates.

All patterns are functions of coordinates attached to a surface (world X/Y for the ground,
box-local coordinates for boxes, the ray direction for the sky), so a texture moves rigidly
with its surface. Each function takes a per-sample *footprint* ``f`` (metres covered by one
pixel at the hit point): noise octaves finer than ~3 footprints are faded out and stripes
are box-filtered over the footprint, which suppresses aliasing. Values are float32.
"""

from __future__ import annotations

import numpy as np

_TABLE_BITS = 8
_TABLE_MASK = (1 << _TABLE_BITS) - 1
# A fixed 256 x 256 lattice of uniform values (the seed only picks offsets into it).
_TABLE = np.random.default_rng(0x7E47).random(1 << (2 * _TABLE_BITS)).astype(np.float32)


def seed_offsets(seed: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Integer lattice offsets derived from a seed (so different seeds see different noise)."""
    seed = np.asarray(seed, dtype=np.int64)
    with np.errstate(over="ignore"):
        h = (seed * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF
        h ^= h >> 15
        h = (h * 0x2C1B3C6D) & 0xFFFFFFFF
        h ^= h >> 12
    return (h & _TABLE_MASK).astype(np.int32), ((h >> 8) & _TABLE_MASK).astype(np.int32)


def value_noise(u: np.ndarray, v: np.ndarray, offset_u: np.ndarray | int, offset_v: np.ndarray | int) -> np.ndarray:
    """2D value noise with unit lattice spacing, smoothstep-interpolated, in ``[0, 1]``.

    Lattice values come from a fixed random table with period 256 cells; the integer
    lattice offsets (from :func:`seed_offsets`, scalar or per sample) select the pattern.
    """
    fu = np.floor(u)
    fv = np.floor(v)
    iu = fu.astype(np.int32) + offset_u
    iv = fv.astype(np.int32) + offset_v
    a = (u - fu).astype(np.float32)
    b = (v - fv).astype(np.float32)
    a = a * a * (3.0 - 2.0 * a)
    b = b * b * (3.0 - 2.0 * b)
    u0 = iu & _TABLE_MASK
    u1 = (iu + 1) & _TABLE_MASK
    v0 = (iv & _TABLE_MASK) << _TABLE_BITS
    v1 = ((iv + 1) & _TABLE_MASK) << _TABLE_BITS
    n00 = _TABLE[v0 | u0]
    n10 = _TABLE[v0 | u1]
    n01 = _TABLE[v1 | u0]
    n11 = _TABLE[v1 | u1]
    top = n00 + a * (n10 - n00)
    bottom = n01 + a * (n11 - n01)
    return top + b * (bottom - top)


def fbm(
    u: np.ndarray,
    v: np.ndarray,
    seed: np.ndarray | int,
    footprint: np.ndarray,
    base_cell: float,
    octaves: int = 4,
    gain: float = 0.6,
) -> np.ndarray:
    """Multi-octave value noise, zero-mean, roughly in ``[-0.5, 0.5]``.

    Octave ``k`` has lattice cell ``base_cell / 2**k`` (metres); its weight ramps from 0 at
    ``cell = 1.5 f`` to 1 at ``cell = 3 f`` (a cheap mip-map). The value is a function of
    the surface coordinates, the seed and the footprint only, so static surfaces look the
    same from nearby viewpoints.
    """
    total = np.zeros(u.shape, dtype=np.float32)
    norm = sum(gain**k for k in range(octaves))
    inv_foot = np.float32(1.0 / 1.5) / np.maximum(footprint, 1e-6).astype(np.float32)
    off_u, off_v = seed_offsets(seed)
    per_sample = np.ndim(off_u) > 0
    for k in range(octaves):
        cell = base_cell / (2.0**k)
        amp = np.float32(gain**k * 2.0 / norm)
        weight = np.clip(np.float32(cell) * inv_foot - 1.0, 0.0, 1.0)
        idx = np.flatnonzero(weight)
        if idx.size == 0:
            break
        ou, ov = off_u + 97 * k, off_v + 31 * k
        if idx.size < 0.6 * u.size:  # evaluate the fine octaves only where they are visible
            if per_sample:
                ou, ov = ou[idx], ov[idx]
            n = value_noise(u[idx] * (1.0 / cell), v[idx] * (1.0 / cell), ou, ov)
            total[idx] += amp * weight[idx] * (n - np.float32(0.5))
        else:
            n = value_noise(u * (1.0 / cell), v * (1.0 / cell), ou, ov)
            total += amp * weight * (n - np.float32(0.5))
    return total


def box_coverage(x: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Fraction of ``[x - f/2, x + f/2]`` inside ``[lo, hi]`` (box-filtered indicator)."""
    half = 0.5 * footprint
    overlap = np.minimum(x + half, hi) - np.maximum(x - half, lo)
    return np.clip(overlap / footprint, 0.0, 1.0).astype(np.float32)


def _square_wave_integral(x: np.ndarray, period: float | np.ndarray, on: float | np.ndarray) -> np.ndarray:
    """``integral_0^x [(t mod period) < on] dt``."""
    q = np.floor(x / period)
    return q * on + np.minimum(x - q * period, on)


def periodic_coverage(x: np.ndarray, period: float | np.ndarray, on: float | np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Box-filtered indicator of ``(x mod period) < on`` (exact for any footprint)."""
    footprint = np.maximum(footprint, 1e-6)
    half = 0.5 * footprint
    hi = _square_wave_integral(x + half, period, on)
    lo = _square_wave_integral(x - half, period, on)
    return np.clip((hi - lo) / footprint, 0.0, 1.0).astype(np.float32)


def smooth_edge(x: np.ndarray, edge: float, footprint: np.ndarray) -> np.ndarray:
    """Box-filtered step: 0 for ``x << edge``, 1 for ``x >> edge``."""
    return np.clip((x - edge) / np.maximum(footprint, 1e-6) + 0.5, 0.0, 1.0).astype(np.float32)


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``a + t (b - a)`` with ``t`` broadcast over the colour axis."""
    return a + t[..., None] * (b - a)


# ---------------------------------------------------------------------------- materials
ASPHALT = np.array([0.33, 0.33, 0.35], dtype=np.float32)
PARKING = np.array([0.40, 0.39, 0.38], dtype=np.float32)
PAINT = np.array([0.92, 0.92, 0.88], dtype=np.float32)
SIDEWALK = np.array([0.62, 0.60, 0.56], dtype=np.float32)
VERGE = np.array([0.32, 0.42, 0.22], dtype=np.float32)
GLASS = np.array([0.16, 0.20, 0.27], dtype=np.float32)
TYRE = np.array([0.08, 0.08, 0.09], dtype=np.float32)
LAMP_REAR = np.array([0.85, 0.08, 0.06], dtype=np.float32)
LAMP_FRONT = np.array([0.95, 0.92, 0.75], dtype=np.float32)
PLATE = np.array([0.92, 0.90, 0.60], dtype=np.float32)
SKY_HORIZON = np.array([0.80, 0.85, 0.92], dtype=np.float32)
SKY_ZENITH = np.array([0.32, 0.52, 0.85], dtype=np.float32)
CLOUD = np.array([0.95, 0.95, 0.97], dtype=np.float32)


def ground_color(
    x: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    d: np.ndarray,
    footprint: np.ndarray,
    footprint_s: np.ndarray,
    footprint_d: np.ndarray,
) -> np.ndarray:
    """Road surface colour ``(N, 3)`` from world ``(x, y)`` and road coordinates ``(s, d)``.

    Lanes of 3.5 m, a double centre line, dashed lane dividers (3 m dash every 9 m), solid
    edge lines at ``|d| = 7``, parking lanes with bay marks to ``|d| = 9``, tiled sidewalks
    to 12 m and a grass verge beyond. ``footprint`` is isotropic (noise), ``footprint_s`` and
    ``footprint_d`` are the pixel's extents along ``s`` and ``d`` (stripes).
    """
    ad = np.abs(d)
    fs, fd = footprint_s, footprint_d
    fine = fbm(x, y, 11, footprint, base_cell=0.8, octaves=4)
    coarse = fbm(x, y, 12, footprint, base_cell=6.0, octaves=2)
    shade = 1.0 + 0.55 * fine + 0.25 * coarse
    road = ASPHALT * shade[:, None]
    parking = PARKING * shade[:, None]
    out = lerp(road, parking, smooth_edge(ad, 7.0, fd))

    tiles = 1.0 - 0.35 * np.maximum(periodic_coverage(s + 0.04, 1.0, 0.08, fs), periodic_coverage(d + 0.04, 1.0, 0.08, fd))
    walk = SIDEWALK * (shade * tiles)[:, None]
    out = lerp(out, walk, smooth_edge(ad, 9.0, fd))
    verge = np.flatnonzero(ad > 11.0)
    if verge.size:
        grass = VERGE * (1.0 + 0.8 * fbm(x[verge], y[verge], 13, footprint[verge], base_cell=1.2, octaves=4))[:, None]
        out[verge] = lerp(out[verge], grass, smooth_edge(ad[verge], 12.0, fd[verge]))

    paint = box_coverage(d, 0.06, 0.18, fd) + box_coverage(d, -0.18, -0.06, fd)
    paint += box_coverage(ad, 6.8, 6.95, fd)
    dashes = periodic_coverage(s, 9.0, 3.0, fs)
    paint += box_coverage(ad, 3.43, 3.57, fd) * dashes
    bays = periodic_coverage(s + 0.05, 6.0, 0.1, fs) * box_coverage(ad, 7.0, 9.0, fd)
    paint += 0.8 * bays
    paint = np.clip(paint, 0.0, 1.0)
    return lerp(out, PAINT * (1.0 + 0.15 * fine)[:, None], paint)


def facade_color(
    u: np.ndarray,
    z: np.ndarray,
    base: np.ndarray,
    seed: np.ndarray,
    periods: np.ndarray,
    vertical: np.ndarray,
    footprint: np.ndarray,
) -> np.ndarray:
    """Building colour: noisy plaster with a window grid on vertical faces.

    ``u`` runs along the face, ``z`` is height above ground (roof faces use ``z`` as a
    second in-plane coordinate and get no windows, ``vertical`` is False there).
    """
    noise = fbm(u, z, seed, footprint, base_cell=1.5, octaves=4)
    wall = base * (1.0 + 0.6 * noise)[:, None]
    win_u = periodic_coverage(u, periods[:, 0], 0.45 * periods[:, 0], footprint)
    win_z = periodic_coverage(z - 1.0, periods[:, 1], 0.5 * periods[:, 1], footprint) * smooth_edge(z, 1.2, footprint)
    windows = win_u * win_z * vertical.astype(np.float32)
    pane = np.flatnonzero(windows)
    if pane.size:
        glass = GLASS * (1.0 + 0.8 * fbm(u[pane], z[pane], seed[pane] + 1, footprint[pane], base_cell=0.7, octaves=2))[:, None]
        wall[pane] = lerp(wall[pane], glass, windows[pane])
    return wall


def pole_color(u: np.ndarray, z: np.ndarray, base: np.ndarray, seed: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    noise = fbm(u, z, seed, footprint, base_cell=0.4, octaves=3)
    bands = periodic_coverage(z, 1.5, 0.25, footprint)
    color = base * (1.0 + 0.5 * noise)[:, None]
    return lerp(color, base * 0.4, bands)


def car_color(
    local: np.ndarray,
    axis: np.ndarray,
    sign: np.ndarray,
    half: np.ndarray,
    base: np.ndarray,
    seed: np.ndarray,
    footprint: np.ndarray,
) -> np.ndarray:
    """Car body: noisy paint, a glass band with pillars, lights and a plate, dark bottom strip.

    ``local`` are object-frame hit points (x fwd, y left, z up, origin at the box centre),
    ``axis``/``sign`` the face normal's axis and direction (``axis == 0, sign < 0``: rear).
    """
    x, y, z = local[:, 0], local[:, 1], local[:, 2]
    u = np.where(axis == 0, y, x)
    v = np.where(axis == 2, y, z)
    noise = fbm(u + 3.1 * axis, v + 1.7 * sign, seed + axis, footprint, base_cell=0.4, octaves=4)
    paint = base * (1.0 + 1.1 * noise)[:, None]
    zrel = z + half[:, 2]  # height above the ground
    height = 2.0 * half[:, 2]
    side = axis != 2
    glass_band = box_coverage(zrel, 0.62 * height, 0.9 * height, footprint) * side
    # Pillars break the side windows into panes.
    pillars = periodic_coverage(u + 0.3, 1.3, 0.18, footprint) * (axis == 1)
    glass_band = glass_band * (1.0 - pillars)
    color = lerp(paint, GLASS * (1.0 + 0.8 * noise)[:, None], glass_band)
    # Lights near the corners of the front/rear faces, a licence plate in the middle.
    ends = axis == 0
    if np.any(ends):
        e = np.flatnonzero(ends)
        ye, ze, fe, he = y[e], zrel[e], footprint[e], height[e]
        width = half[e, 1]
        band = box_coverage(ze, 0.45 * he, 0.58 * he, fe)
        corner = box_coverage(np.abs(ye), width - 0.38, width - 0.06, fe)
        lamp = np.where((sign[e] < 0)[:, None], LAMP_REAR, LAMP_FRONT)
        color[e] = lerp(color[e], lamp, band * corner)
        plate = box_coverage(ye, -0.26, 0.26, fe) * box_coverage(ze, 0.3 * he, 0.42 * he, fe)
        color[e] = lerp(color[e], np.broadcast_to(PLATE, (len(e), 3)), plate)
    bottom = (1.0 - smooth_edge(zrel, 0.35, footprint)) * side
    return lerp(color, TYRE, bottom)


def sky_color(directions: np.ndarray, pixel_angle: float) -> np.ndarray:
    """Sky colour from world ray directions ``(N, 3)`` only (independent of position).

    ``pixel_angle`` (rad) is the angle one pixel subtends; it sets the blur of the clouds.
    """
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    up = np.clip(unit[:, 2], -0.2, 1.0).astype(np.float32)
    t = np.clip(up * 2.5, 0.0, 1.0)
    base = lerp(np.broadcast_to(SKY_HORIZON, (len(up), 3)), np.broadcast_to(SKY_ZENITH, (len(up), 3)), t)
    # Clouds: noise on the plane z = 1 seen along the ray (damped towards the horizon).
    denom = np.maximum(up, 0.0) + 0.15
    px = unit[:, 0] / denom * 6.0
    py = unit[:, 1] / denom * 6.0
    footprint = (6.0 * pixel_angle / denom).astype(np.float32)
    clouds = fbm(px, py, 99, footprint, base_cell=1.0, octaves=3)
    cover = np.clip(clouds * 2.5 + 0.2, 0.0, 1.0)
    return lerp(base, np.broadcast_to(CLOUD, base.shape), cover)
