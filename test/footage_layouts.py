"""Tiny trees of real footage in the public layouts (KITTI odometry, the VisualSLAM samples, DAVIS,
Dynamo-Depth's lidar clips)
and a small video, for the tests of the footage readers, the bag writer and the node on footage."""

from __future__ import annotations

import json

import cv2
import numpy as np

W, H = 64, 32  # the frames on disk
FRAMES = 4
# KITTI odometry 00's calibration, shortened: P2 (colour left) is 6 cm left of P0, P1 54 cm right
P0 = [718.856, 0, 607.1928, 0, 0, 718.856, 185.2157, 0, 0, 0, 1, 0]
P1 = [718.856, 0, 607.1928, -386.1448, 0, 718.856, 185.2157, 0, 0, 0, 1, 0]
P2 = [718.856, 0, 607.1928, 45.38225, 0, 718.856, 185.2157, -0.1130887, 0, 0, 1, 0.003779761]
P3 = [718.856, 0, 607.1928, -337.2877, 0, 718.856, 185.2157, 2.369057, 0, 0, 1, 0.004915215]


def texture(index: int, seed: int = 0) -> np.ndarray:
    """A ``(H, W, 3)`` uint8 BGR frame: smooth noise that slides one pixel a frame, brightness rising."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.uniform(40, 160, size=(8, 16, 3)), (W + 16, H), interpolation=cv2.INTER_CUBIC)
    return np.clip(base[:, index:index + W] + 10 * index, 0, 255).astype(np.uint8)


def poses(count: int) -> list[np.ndarray]:
    """world_from_camera: driving forward 0.8 m a frame while turning 0.02 rad about y."""
    out = []
    for i in range(count):
        angle = 0.02 * i
        pose = np.eye(4)
        pose[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
        pose[:3, 3] = [0.1 * i, 0.0, 0.8 * i]
        out.append(pose)
    return out


def write_poses(path, count, trailing_newline=True):
    text = "\n".join(" ".join(f"{v:.6e}" for v in p[:3].reshape(-1)) for p in poses(count))
    path.write_text(text + ("\n" if trailing_newline else ""))


def kitti_odometry_root(root, frames=FRAMES, pose_count=None):
    """ROOT/sequences/00 with grey image_0 and colour image_2, calib.txt, times.txt; ROOT/poses/00.txt."""
    sequence = root / "sequences" / "00"
    for camera in ("image_0", "image_2"):
        (sequence / camera).mkdir(parents=True)
        for i in range(frames):
            image = texture(i) if camera == "image_2" else cv2.cvtColor(texture(i), cv2.COLOR_BGR2GRAY)
            assert cv2.imwrite(str(sequence / camera / f"{i:06d}.png"), image)
    lines = [f"{key}: " + " ".join(f"{v:.12e}" for v in values) for key, values in
             (("P0", P0), ("P1", P1), ("P2", P2), ("P3", P3), ("Tr", [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]))]
    (sequence / "calib.txt").write_text("\n".join(lines) + "\n")
    (sequence / "times.txt").write_text("".join(f"{0.1036 * i:.6e}\n" for i in range(frames)))
    (root / "poses").mkdir()
    write_poses(root / "poses" / "00.txt", frames if pose_count is None else pose_count)
    return root


def visual_slam_root(root, frames=FRAMES):
    """DIR/KITTI_sequence_1 with image_l/ and image_r/ (grey), calib.txt of two bare lines, poses.txt."""
    sequence = root / "KITTI_sequence_1"
    for camera in ("image_l", "image_r"):
        (sequence / camera).mkdir(parents=True)
        for i in range(frames):
            assert cv2.imwrite(str(sequence / camera / f"{i:06d}.png"), cv2.cvtColor(texture(i), cv2.COLOR_BGR2GRAY))
    (sequence / "calib.txt").write_text("\n".join(" ".join(f"{v:.12e}" for v in p) for p in (P0, P1)) + "\n")
    write_poses(sequence / "poses.txt", frames, trailing_newline=False)  # as the samples: no final newline
    return root


def davis_root(root, frames=FRAMES, annotations=None, name="bear"):
    """ROOT/JPEGImages/480p/<name>/*.jpg and ROOT/Annotations/480p/<name>/*.png (255 in a box)."""
    images = root / "JPEGImages" / "480p" / name
    labels = root / "Annotations" / "480p" / name
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i in range(frames):
        assert cv2.imwrite(str(images / f"{i:05d}.jpg"), texture(i))
    for i in range(frames if annotations is None else annotations):
        mask = np.zeros((H, W), np.uint8)
        mask[8:20, 10 + i:30 + i] = 255
        assert cv2.imwrite(str(labels / f"{i:05d}.png"), mask)
    return root


def write_video(path, frames=12, fps=30.0, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(texture(i, seed))
    writer.release()
    return path


def lidar_clips_root(root, frames=3):
    """Dynamo-Depth's sample layout: a KITTI raw clip (calib_cam_to_cam.txt; points as row, column, depth) and
    a nuScenes one (rgb/cam.json; points as x, y, depth), lidar on every frame of the first, the first frame
    of the second. Each frame's points: a ramp of depths over the lower half, and at pixel (row 3, column 7)
    two points, 9 m and 4 m (the nearer one counts)."""
    kitti = root / "tiny_kitti" / "2011_09_26" / "2011_09_26_drive_0001_sync"
    (kitti / "calib_cam_to_cam.txt").parent.mkdir(parents=True)
    (kitti / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\nP_rect_02: " + " ".join(f"{v:e}" for v in P2) + "\n")
    nuscenes = root / "tiny_nuscenes" / "scenes" / "scene-0001" / "FRONT"
    clips = ((kitti / "image_02", ".png", False, frames), (nuscenes, ".jpg", True, 1))
    for clip, suffix, xy, with_depth in clips:
        (clip / "rgb" / "original").mkdir(parents=True)
        (clip / "depth").mkdir()
        for i in range(frames):
            assert cv2.imwrite(str(clip / "rgb" / "original" / f"{i:06d}{suffix}"), texture(i))
            if i >= with_depth:
                continue
            rows, cols = np.meshgrid(np.arange(H // 2, H), np.arange(W), indexing="ij")
            depth = 40.0 / (rows - H // 2 + 1.0)
            points = [(r, c, d) for r, c, d in zip(rows.ravel(), cols.ravel(), depth.ravel())]
            points += [(3, 7, 9.0), (3, 7, 4.0)]
            array = np.array([(c, r, d) if xy else (r, c, d) for r, c, d in points], np.float64)
            np.save(clip / "depth" / f"{i:06d}.npy", array)
    (nuscenes / "rgb" / "cam.json").write_text(json.dumps({"camera_intrinsic": [[50.0, 0, 32.0], [0, 50.0, 16.0],
                                                                                [0, 0, 1.0]], "dim": [H, W]}))
    return root
