"""Synthetic street-scene generator: determinism, exact ground truth, writers and CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mds_core.method.geometry import backproject, project
from mds_core.method.warping import sample_source
from mds_core.tools.synth import (
    MOTION_MOVING,
    MOTION_PARKED,
    MOTION_STATIC,
    SynthConfig,
    SynthFrame,
    generate_sequence,
    write_rosbag,
    write_sequence_folder,
)

SMALL = dict(width=160, height=48)


def _frames(**kwargs) -> list[SynthFrame]:
    return list(generate_sequence(SynthConfig(**kwargs)))


@pytest.fixture(scope="module", params=["road", "intersection"])
def kitti_frames(request) -> list[SynthFrame]:
    """A short sequence at the default test resolution 320x96: the road's traffic, and the same with the
    intersection's (cars and cyclists crossing, pedestrians): the ground truth must hold for both."""
    traffic = dict(num_crossing=3, num_pedestrians=4, num_cyclists=1) if request.param == "intersection" else {}
    return _frames(width=320, height=96, num_frames=6, seed=3, **traffic)


@pytest.fixture(scope="module")
def default_sequence() -> list[SynthFrame]:
    """A full-length default sequence (100 frames, 10 s) at a tiny resolution."""
    return _frames(width=128, height=40, seed=0)


# ------------------------------------------------------------------------------ basics
def test_frame_contents(kitti_frames: list[SynthFrame]) -> None:
    cfg = SynthConfig(width=320, height=96)
    frame = kitti_frames[0]
    assert frame.image.shape == (96, 320, 3) and frame.image.dtype == np.uint8
    assert frame.depth.shape == (96, 320) and frame.depth.dtype == np.float32
    assert frame.motion.dtype == np.uint8 and frame.instance.dtype == np.int32
    np.testing.assert_allclose(frame.intrinsics, [[0.58 * 320, 0, 160], [0, 1.92 * 96, 48], [0, 0, 1]])
    assert frame.camera_pose.shape == (4, 4)
    np.testing.assert_allclose(frame.camera_pose[:3, :3] @ frame.camera_pose[:3, :3].T, np.eye(3), atol=1e-12)
    stamps = [f.timestamp_ns for f in kitti_frames]
    assert stamps[0] == cfg.start_time_ns
    assert all(b - a == 100_000_000 for a, b in zip(stamps, stamps[1:]))
    assert set(frame.object_poses) == set(frame.object_moving) == set(frame.object_sizes)
    assert set(np.unique(frame.motion)) <= {MOTION_STATIC, MOTION_MOVING, MOTION_PARKED}
    # Strong texture: the image is far from flat.
    assert frame.image.astype(np.float32).std() > 20


def test_camera_height_and_looking_along_the_road(kitti_frames: list[SynthFrame]) -> None:
    for frame in kitti_frames:
        pose = frame.camera_pose
        assert abs(pose[2, 3] - 1.5) < 1e-9  # world Z up, road at Z = 0
        forward = pose[:3, 2]
        assert abs(forward[2]) < 0.02  # optical axis roughly horizontal
        assert pose[:3, 1][2] < -0.99  # image y points down


def test_determinism() -> None:
    a = _frames(**SMALL, num_frames=3, seed=5)
    b = _frames(**SMALL, num_frames=3, seed=5)
    c = _frames(**SMALL, num_frames=3, seed=6)
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.image, fb.image)
        assert np.array_equal(fa.depth, fb.depth)
        assert np.array_equal(fa.motion, fb.motion)
        assert np.array_equal(fa.instance, fb.instance)
        assert np.array_equal(fa.camera_pose, fb.camera_pose)
        assert all(np.array_equal(fa.object_poses[k], fb.object_poses[k]) for k in fa.object_poses)
    assert not np.array_equal(a[0].image, c[0].image)
    assert not np.array_equal(a[-1].camera_pose, c[-1].camera_pose)


def test_any_resolution_and_intrinsics() -> None:
    (frame,) = _frames(width=97, height=33, num_frames=1, fx_ratio=0.7, cx_ratio=0.45)
    assert frame.image.shape == (33, 97, 3)
    assert frame.intrinsics[0, 0] == pytest.approx(0.7 * 97)
    assert frame.intrinsics[0, 2] == pytest.approx(0.45 * 97)
    assert (frame.depth > 0).any() and (frame.depth == 0).any()


# ------------------------------------------------------------------------------ geometry
def _rays_world(frame: SynthFrame) -> tuple[np.ndarray, np.ndarray]:
    """World-frame ray directions with unit optical-axis component, and the camera centre."""
    h, w = frame.depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)], -1)
    rays_cam = pix @ np.linalg.inv(frame.intrinsics).T
    return rays_cam @ frame.camera_pose[:3, :3].T, frame.camera_pose[:3, 3]


def _ray_box(origin: np.ndarray, dirs: np.ndarray, world_from_box: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Independent slab test: ray parameter of the entry point, inf where missed."""
    r, c = world_from_box[:3, :3], world_from_box[:3, 3]
    o = r.T @ (origin - c)
    d = dirs @ r
    half = 0.5 * size
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    near = np.minimum(t1, t2).max(-1)
    far = np.maximum(t1, t2).min(-1)
    return np.where((near <= far) & (near > 0), near, np.inf)


def test_labels_agree_with_geometry(kitti_frames: list[SynthFrame]) -> None:
    for frame in kitti_frames[::2]:
        dirs, origin = _rays_world(frame)
        depth = frame.depth.astype(np.float64)
        points = origin + depth[..., None] * dirs
        hit = depth > 0
        # Nothing lies under the road surface; sky pixels carry no labels.
        assert points[hit][:, 2].min() > -1e-3
        assert not frame.motion[~hit].any() and not frame.instance[~hit].any()
        # Sky rays miss every object.
        seen = np.unique(frame.instance)
        assert len(seen) > 1, "some object must be visible"
        for oid, pose in frame.object_poses.items():
            t_box = _ray_box(origin, dirs, pose, frame.object_sizes[oid])
            mine = frame.instance == oid
            assert np.isinf(t_box[~hit]).all()
            # Object pixels: depth is the analytic ray-box distance ...
            if mine.any():
                np.testing.assert_allclose(depth[mine], t_box[mine], rtol=1e-5)
            # ... and wherever this box is the nearest surface hit, the pixel is labelled with it.
            nearer = t_box < depth * (1 - 1e-4)
            assert not nearer.any()
            expected = MOTION_MOVING if frame.object_moving[oid] else MOTION_PARKED
            assert (frame.motion[mine] == expected).all()
        # motion == 1 exactly on moving objects' pixels, 2 exactly on parked ones.
        moving_ids = [k for k, m in frame.object_moving.items() if m]
        parked_ids = [k for k, m in frame.object_moving.items() if not m]
        np.testing.assert_array_equal(frame.motion == MOTION_MOVING, np.isin(frame.instance, moving_ids))
        np.testing.assert_array_equal(frame.motion == MOTION_PARKED, np.isin(frame.instance, parked_ids))
        # Background pixels that look down hit the road plane at exactly Z = 0 or a structure.
        ground = hit & (frame.instance == 0) & (np.abs(points[..., 2]) < 1e-6)
        t_plane = -origin[2] / dirs[..., 2]
        np.testing.assert_allclose(depth[ground], t_plane[ground], rtol=1e-5)


def test_sequence_has_moving_and_same_speed_objects(default_sequence: list[SynthFrame]) -> None:
    frames = default_sequence
    assert len(frames) == 100
    visible = [np.any(f.motion == MOTION_MOVING) for f in frames]
    assert np.mean(visible) >= 0.9
    assert np.mean([np.any(f.motion == MOTION_PARKED) for f in frames]) > 0.3
    kinds = frames[0].object_kinds
    assert {"same_speed", "oncoming", "faster", "parked"} <= set(kinds.values())
    cams = np.stack([f.camera_pose[:3, 3] for f in frames])
    cam_speed = np.linalg.norm(np.diff(cams, axis=0), axis=1) * 10.0
    assert cam_speed.max() - cam_speed.min() > 1.0  # speed changes
    headings = [np.arctan2(f.camera_pose[1, 2], f.camera_pose[0, 2]) for f in frames]
    assert np.ptp(np.unwrap(headings)) > 0.02  # heading changes
    for oid, kind in kinds.items():
        pos = np.stack([f.object_poses[oid][:3, 3] for f in frames])
        speed = np.linalg.norm(np.diff(pos, axis=0), axis=1) * 10.0
        if kind == "same_speed":
            np.testing.assert_allclose(speed, cam_speed, rtol=0.1, atol=0.3)
            # Travels in the camera's direction.
            assert np.all(np.sum(np.diff(pos, axis=0) * np.diff(cams, axis=0), axis=1) > 0)
        elif kind == "parked":
            assert speed.max() == 0.0
        elif kind == "faster":
            assert np.all(speed > cam_speed + 1.0)
        elif kind == "oncoming":
            assert np.all(np.sum(np.diff(pos, axis=0) * np.diff(cams, axis=0), axis=1) < 0)


# ------------------------------------------------------------------------------ warping
def _warp_previous(prev: SynthFrame, cur: SynthFrame, object_motion: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp ``prev`` into ``cur`` with GT depth of ``cur`` and GT poses.

    Returns the warped image ``(H, W, 3)`` in [0, 1], the predicted depth of each point in
    the previous camera, and the previous frame's depth sampled at the same place.
    """
    h, w = cur.depth.shape
    K = torch.from_numpy(cur.intrinsics)[None]
    points = backproject(torch.from_numpy(cur.depth.astype(np.float64))[None, None], torch.linalg.inv(K))
    moved = _moved_points(prev, cur, points, object_motion)[0].reshape(3, -1).numpy()
    moved_t = torch.from_numpy(moved.reshape(1, 3, h, w))
    pixels = project(moved_t, K)
    image_prev = torch.from_numpy(prev.image.astype(np.float64) / 255.0).permute(2, 0, 1)[None]
    warped = sample_source(image_prev, pixels)[0].permute(1, 2, 0).numpy()
    depth_prev = sample_source(torch.from_numpy(prev.depth.astype(np.float64))[None, None], pixels)[0, 0].numpy()
    uv = pixels[0].numpy()
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= w - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= h - 1)
    z = moved[2].reshape(h, w)
    depth_prev = np.where(inside & (z > 0), depth_prev, np.nan)
    return warped, z, depth_prev


def test_ground_truth_warp_is_photometrically_consistent(kitti_frames: list[SynthFrame]) -> None:
    """Warping t-1 into t with GT depth and GT camera + object motion reproduces frame t."""
    stats: dict[str, list[float]] = {"static": [], "static_id": [], "moving": [], "moving_cam": [], "parked": [], "parked_id": []}
    counts = {"static": 0, "moving": 0, "parked": 0}
    for prev, cur in zip(kitti_frames, kitti_frames[1:]):
        target = cur.image.astype(np.float64) / 255.0
        warped, z, depth_prev = _warp_previous(prev, cur, object_motion=True)
        warped_cam, _, _ = _warp_previous(prev, cur, object_motion=False)
        with np.errstate(invalid="ignore"):
            unoccluded = np.abs(depth_prev - z) < 0.03 * z
        valid = unoccluded & (cur.depth > 0)
        err = np.abs(warped - target).mean(-1)
        identity = np.abs(prev.image.astype(np.float64) / 255.0 - target).mean(-1)
        err_cam = np.abs(warped_cam - target).mean(-1)
        static = valid & (cur.motion == MOTION_STATIC)
        moving = valid & (cur.motion == MOTION_MOVING)
        parked = valid & (cur.motion == MOTION_PARKED)
        # Parked cars are static in the world: the camera-only warp is the GT warp for them.
        np.testing.assert_allclose(warped[parked], warped_cam[parked], atol=1e-6)
        stats["parked"].append(err[parked].sum())
        stats["parked_id"].append(identity[parked].sum())
        counts["parked"] += int(parked.sum())
        stats["static"].append(err[static].sum())
        stats["static_id"].append(identity[static].sum())
        stats["moving"].append(err[moving].sum())
        stats["moving_cam"].append(err_cam[moving].sum())
        counts["static"] += int(static.sum())
        counts["moving"] += int(moving.sum())
        # Most of the image is covered by the check.
        assert static.sum() > 0.4 * (cur.motion == MOTION_STATIC).sum()
    assert counts["moving"] > 500 and counts["parked"] > 500
    static_err = sum(stats["static"]) / counts["static"]
    static_id = sum(stats["static_id"]) / counts["static"]
    moving_err = sum(stats["moving"]) / counts["moving"]
    moving_cam = sum(stats["moving_cam"]) / counts["moving"]
    parked_err = sum(stats["parked"]) / counts["parked"]
    parked_id = sum(stats["parked_id"]) / counts["parked"]
    print(
        f"static {static_err:.4f} (identity {static_id:.4f}); moving {moving_err:.4f} "
        f"(camera-only {moving_cam:.4f}); parked {parked_err:.4f} (identity {parked_id:.4f})"
    )
    assert static_err < 0.03 and static_err < 0.3 * static_id
    assert parked_err < 0.03 and parked_err < 0.3 * parked_id
    assert moving_err < 0.03 and moving_err < 0.3 * moving_cam


def test_the_scene_flow_warp_with_ground_truth_reproduces_the_previous_frame(kitti_frames: list[SynthFrame]) -> None:
    """The scene-flow motion model (Dynamo-Depth's warp) given GT depth, GT ego-motion, the complete flow
    that GT object motion implies and the mask 1 on movers lands every point exactly where the
    generator's own ground-truth warp does, so it reproduces the previous frame as well as that check."""
    from mds_core.method.scene_flow import SceneFlowMotion
    from mds_core.method.warping import warp_source

    for prev, cur in zip(kitti_frames, kitti_frames[1:]):
        h, w = cur.depth.shape
        intrinsics = torch.from_numpy(cur.intrinsics)[None]
        depth = torch.from_numpy(cur.depth.astype(np.float64))[None, None]
        points = backproject(depth, torch.linalg.inv(intrinsics))
        ego = torch.from_numpy(np.linalg.inv(prev.camera_pose) @ cur.camera_pose)[None]  # target -> source
        expected, _, _ = _warp_previous(prev, cur, object_motion=True)
        # where GT motion puts each point in the previous camera, and the flow that T (P + F) needs for it
        true_points = _moved_points(prev, cur, points)
        inverse_ego = torch.linalg.inv(ego)
        independent = torch.einsum("bij,bjhw->bihw", inverse_ego[:, :3, :3], true_points) \
            + inverse_ego[:, :3, 3, None, None] - points
        moving = torch.from_numpy((cur.motion == MOTION_MOVING).astype(np.float64))[None, None]
        motion = SceneFlowMotion(ego, torch.zeros_like(points), moving)
        motion.complete_flow = independent + motion.rigid_flow(points)  # C = F + E
        image_prev = torch.from_numpy(prev.image.astype(np.float64) / 255.0).permute(2, 0, 1)[None]
        warped = warp_source(image_prev, depth, intrinsics, motion).image[0].permute(1, 2, 0).numpy()
        movers = cur.motion == MOTION_MOVING
        assert movers.sum() > 0
        np.testing.assert_allclose(warped, expected, atol=1e-6)  # on movers and static pixels alike


def _moved_points(prev: SynthFrame, cur: SynthFrame, points: torch.Tensor, object_motion: bool = True) -> torch.Tensor:
    """``(1, 3, H, W)``: the target points in the previous camera under GT camera (and object) motion."""
    pts = points[0].reshape(3, -1).numpy()
    pts_h = np.concatenate([pts, np.ones((1, pts.shape[1]))])
    moved = (np.linalg.inv(prev.camera_pose) @ cur.camera_pose) @ pts_h
    instance = cur.instance.reshape(-1)
    for oid in np.unique(instance[instance > 0]) if object_motion else []:
        transform = np.linalg.inv(prev.camera_pose) @ prev.object_poses[oid] @ np.linalg.inv(cur.object_poses[oid]) \
            @ cur.camera_pose
        selected = instance == oid
        moved[:, selected] = transform @ pts_h[:, selected]
    return torch.from_numpy(moved[:3].reshape(1, 3, *cur.depth.shape))


# ------------------------------------------------------------------------------ writers
def test_sequence_folder_round_trip(tmp_path: Path) -> None:
    cfg = SynthConfig(**SMALL, num_frames=3, seed=2)
    out = write_sequence_folder(tmp_path, "seq", cfg)
    assert out == tmp_path / "seq"
    frames = list(generate_sequence(cfg))
    calib = json.loads((out / "calib.json").read_text())
    assert calib["width"] == 160 and calib["height"] == 48
    np.testing.assert_allclose(calib["K"], frames[0].intrinsics)
    for frame in frames:
        name = f"{frame.index:06d}"
        image = cv2.cvtColor(cv2.imread(str(out / "images" / f"{name}.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(image, frame.image)
        assert np.array_equal(np.load(out / "depth" / f"{name}.npy"), frame.depth)
        motion = cv2.imread(str(out / "motion" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert motion.dtype == np.uint8 and np.array_equal(motion, frame.motion)
        instances = cv2.imread(str(out / "instances" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert instances.dtype == np.uint16 and np.array_equal(instances, frame.instance)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    poses = json.loads((out / "poses.json").read_text())
    assert poses["timestamps_ns"] == [f.timestamp_ns for f in frames]
    np.testing.assert_allclose(poses["camera_poses"][2], frames[2].camera_pose)
    oid = next(iter(frames[0].object_poses))
    np.testing.assert_allclose(poses["objects"][str(oid)]["poses"][1], frames[1].object_poses[oid])
    assert SynthConfig.from_dict(poses["config"]) == cfg
    with pytest.raises(FileExistsError):
        write_sequence_folder(tmp_path, "seq", cfg)
    write_sequence_folder(tmp_path, "seq", cfg, overwrite=True)


def _read_bag(path: Path) -> dict[str, list]:
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for connection, timestamp, raw in reader.messages():
            msg = typestore.deserialize_cdr(raw, connection.msgtype)
            out.setdefault(connection.topic, []).append((timestamp, connection.msgtype, msg))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_rosbag_round_trip(tmp_path: Path, storage: str) -> None:
    cfg = SynthConfig(**SMALL, num_frames=3, seed=4)
    bag = write_rosbag(tmp_path / "bag", cfg, storage=storage, depth_topic="/camera/depth", frame_id="cam")
    frames = list(generate_sequence(cfg))
    topics = _read_bag(bag)
    assert set(topics) == {"/camera/image_raw", "/camera/camera_info", "/camera/depth"}
    images, infos, depths = topics["/camera/image_raw"], topics["/camera/camera_info"], topics["/camera/depth"]
    assert len(images) == len(infos) == len(depths) == 3
    stamps = [t for t, _, _ in images]
    assert stamps == [f.timestamp_ns for f in frames] and all(b > a for a, b in zip(stamps, stamps[1:]))
    for (t, msgtype, msg), frame in zip(images, frames):
        assert msgtype == "sensor_msgs/msg/Image" and msg.encoding == "rgb8"
        assert (msg.height, msg.width, msg.step) == (48, 160, 480)
        assert msg.header.frame_id == "cam"
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t
        assert np.array_equal(np.asarray(msg.data).reshape(48, 160, 3), frame.image)
    for (_, msgtype, msg), frame in zip(infos, frames):
        assert msgtype == "sensor_msgs/msg/CameraInfo"
        assert (msg.height, msg.width, msg.distortion_model) == (48, 160, "plumb_bob")
        np.testing.assert_allclose(np.asarray(msg.k).reshape(3, 3), frame.intrinsics)
        np.testing.assert_allclose(np.asarray(msg.p).reshape(3, 4)[:, :3], frame.intrinsics)
        assert not np.any(msg.d)
    for (_, _, msg), frame in zip(depths, frames):
        assert msg.encoding == "32FC1" and msg.step == 160 * 4 and not msg.is_bigendian
        depth = np.frombuffer(np.asarray(msg.data, dtype=np.uint8).tobytes(), dtype="<f4").reshape(48, 160)
        assert np.array_equal(depth, frame.depth)
    if storage == "mcap":
        from mcap.reader import make_reader
        from mcap_ros2.decoder import DecoderFactory

        (mcap_file,) = list(bag.glob("*.mcap"))
        with open(mcap_file, "rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            decoded = [(c.topic, m.log_time, msg) for _, c, m, msg in reader.iter_decoded_messages()]
        images_mcap = [(t, msg) for topic, t, msg in decoded if topic == "/camera/image_raw"]
        assert [t for t, _ in images_mcap] == stamps
        assert np.array_equal(np.frombuffer(bytes(images_mcap[0][1].data), np.uint8).reshape(48, 160, 3), frames[0].image)
        infos_mcap = [msg for topic, _, msg in decoded if topic == "/camera/camera_info"]
        np.testing.assert_allclose(np.asarray(infos_mcap[0].k).reshape(3, 3), frames[0].intrinsics)
    with pytest.raises(FileExistsError):
        write_rosbag(bag, cfg, storage=storage)


def test_cli(tmp_path: Path) -> None:
    from mds_core.cli import synth as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", str(tmp_path / "out"), "--frames", "2", "--width", "64", "--height", "32",
                              "--sequences", "2"])
    assert args.func(args) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["synth_000", "synth_001"]
    assert len(list((tmp_path / "out" / "synth_001" / "images").iterdir())) == 2
    args = parser.parse_args(["synth", str(tmp_path / "bags"), "--format", "bag", "--frames", "2", "--width", "64",
                              "--height", "32"])
    assert args.func(args) == 0
    assert (tmp_path / "bags" / "synth_000" / "metadata.yaml").exists()
    # A bad output path (an existing file) is a clear error, not a traceback.
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    args = parser.parse_args(["synth", str(blocker), "--frames", "1", "--width", "64", "--height", "32"])
    with pytest.raises(SystemExit) as info:
        args.func(args)
    assert "file.txt" in str(info.value.code)
