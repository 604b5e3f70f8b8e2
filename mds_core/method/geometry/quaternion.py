"""Unit quaternions ``(x, y, z, w)`` of 3x3 rotation matrices and back, in plain Python floats.

These run a few times a frame outside the networks (the odometry, the pose messages, trajectory
files). Right after the networks NumPy's and LAPACK's code is out of the caches: a batched 3x3
eigensolve then takes 10-90 us and each small NumPy call several, against about 5 us for one
matrix here.

A quaternion and its negation are the same rotation; :func:`canonical` picks ``w >= 0`` (half
turns, ``w = 0``: the largest component positive), so equal rotations give equal quaternions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Quaternion = tuple[float, float, float, float]
Matrix3 = Sequence[Sequence[float]]

#: How far from orthonormal (entries of ``R R^T - I``) a matrix may be and count as a rotation.
ORTHONORMAL_TOLERANCE = 1e-6


def is_rotation(m: Matrix3, tolerance: float = ORTHONORMAL_TOLERANCE) -> bool:
    """Whether ``m`` is a proper rotation (orthonormal within ``tolerance``, determinant > 0)."""
    (a, b, c), (d, e, f), (g, h, i) = m
    gram = (a * a + b * b + c * c - 1.0, d * d + e * e + f * f - 1.0, g * g + h * h + i * i - 1.0,
            a * d + b * e + c * f, a * g + b * h + c * i, d * g + e * h + f * i)
    determinant = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return max(abs(v) for v in gram) <= tolerance and determinant > 0


def shepperd(m: Matrix3) -> Quaternion:
    """The canonical unit quaternion of rotation ``m`` by Shepperd's method (from the largest of
    ``|w|, |x|, |y|, |z|``: stable for every rotation). A matrix slightly off a rotation (a network's
    float32 output) gets that of a rotation about as near; :func:`is_rotation` says whether it is one."""
    (a, b, c), (d, e, f), (g, h, i) = m
    trace = a + e + i
    if trace >= max(a, e, i):  # |w| largest: 4 w^2 = 1 + trace
        s = 2.0 * math.sqrt(1.0 + trace)
        q = ((h - f) / s, (c - g) / s, (d - b) / s, s / 4.0)
    elif a >= e and a >= i:
        s = 2.0 * math.sqrt(1.0 + a - e - i)
        q = (s / 4.0, (b + d) / s, (c + g) / s, (h - f) / s)
    elif e >= i:
        s = 2.0 * math.sqrt(1.0 + e - a - i)
        q = ((b + d) / s, s / 4.0, (f + h) / s, (c - g) / s)
    else:
        s = 2.0 * math.sqrt(1.0 + i - a - e)
        q = ((c + g) / s, (f + h) / s, s / 4.0, (d - b) / s)
    return canonical(q)


def canonical(q: Sequence[float]) -> Quaternion:
    """``q`` normalised, with ``w >= 0`` (``w = 0`` up to rounding: its largest component positive)."""
    x, y, z, w = (float(v) for v in q)
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    largest = max((x, y, z), key=abs)
    if w < -1e-12 or (abs(w) <= 1e-12 and largest < 0):
        norm = -norm
    return x / norm, y / norm, z / norm, w / norm


def rotation(q: Sequence[float]) -> list[list[float]]:
    """The 3x3 rotation matrix (rows) of quaternion ``q`` (normalised first): orthonormal to rounding."""
    x, y, z, w = canonical(q)
    return [[1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
            [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
            [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)]]


def rotation_vector(q: Sequence[float]) -> tuple[float, float, float]:
    """The rotation vector (axis times angle in radians, angle in [0, pi]) of quaternion ``q``."""
    x, y, z, w = canonical(q)
    s = math.sqrt(x * x + y * y + z * z)
    if s < 1e-12:
        return 2.0 * x, 2.0 * y, 2.0 * z  # the small-angle limit
    factor = 2.0 * math.atan2(s, w) / s
    return x * factor, y * factor, z * factor
