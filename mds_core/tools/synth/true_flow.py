"""The true optical flow of a generated sequence folder, from its ground truth.

A pixel ``p`` of frame ``i`` with depth ``z`` is the point ``X = z K^-1 p`` of camera ``i``; in the world it
is ``W_i X`` (``W`` = world_from_camera). A point of object ``o`` (its instance id) moves with the object,
``B_o A_o^-1`` from frame ``i`` to frame ``j`` (``A``, ``B`` = world_from_object at ``i`` and ``j``); the static
world does not. Its flow is where camera ``j`` sees it, ``pi(K W_j^-1 ...)``, minus ``p``. The flow a static
point would have (the same point without the object's motion) comes with it: their difference is what
any two-frame method can see of a mover (docs/decomposition-ladder.md, "The flow's resolution").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class TrueFlow:
    """``(2, H, W)`` flows in pixels from frame ``i`` to frame ``j``: ``flow`` (the scene as it moved) and
    ``static_flow`` (as if nothing but the camera moved); ``valid`` ``(H, W)``: pixels with depth (not sky)."""

    flow: np.ndarray
    static_flow: np.ndarray
    valid: np.ndarray


def true_flow(sequence: str | Path, index: int, other: int) -> TrueFlow:
    """The true flow from frame ``index`` to frame ``other`` of a sequence folder written by
    :func:`mds_core.tools.synth.write_sequence_folder` (it needs ``poses.json``, ``depth/`` and ``instances/``)."""
    folder = Path(sequence)
    poses = json.loads((folder / "poses.json").read_text())
    intrinsics = np.asarray(json.loads((folder / "calib.json").read_text())["K"], np.float64)
    depth = np.load(folder / "depth" / f"{index:06d}.npy").astype(np.float64)
    instances = cv2.imread(str(folder / "instances" / f"{index:06d}.png"), cv2.IMREAD_UNCHANGED).astype(np.int64)
    height, width = depth.shape
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    camera = np.asarray(poses["camera_poses"][index], np.float64)
    world = camera[:3, :3] @ (np.linalg.inv(intrinsics) @ pixels * depth.ravel()) + camera[:3, 3:]
    moved = world.copy()
    ids = instances.ravel()
    for oid in np.unique(ids[ids > 0]):
        record = poses["objects"].get(str(int(oid)))
        if record is None:
            continue
        there = np.asarray(record["poses"][other], np.float64) @ np.linalg.inv(np.asarray(record["poses"][index]))
        mine = ids == oid
        moved[:, mine] = there[:3, :3] @ world[:, mine] + there[:3, 3:]
    view = np.linalg.inv(np.asarray(poses["camera_poses"][other], np.float64))

    def flow_of(points: np.ndarray) -> np.ndarray:
        seen = intrinsics @ (view[:3, :3] @ points + view[:3, 3:])
        return (seen[:2] / np.maximum(seen[2:], 1e-6) - pixels[:2]).reshape(2, height, width)

    return TrueFlow(flow=flow_of(moved), static_flow=flow_of(world), valid=depth > 0)
