"""Readers of real footage (``--format kitti_odometry | davis | video``) on tiny trees in the real
layouts, their errors through the command line, ``mds infer`` / ``mds odometry`` on each, and
``mds bag-from-video`` read back by the project's bag reader."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from footage_layouts import (
    FRAMES,
    P0,
    P2,
    H,
    W,
    davis_root,
    kitti_odometry_root,
    lidar_clips_root,
    poses,
    texture,
    visual_slam_root,
    write_video,
)

from mds_core.checkpoint import write_untrained_checkpoint
from mds_core.cli.main import build_parser, main
from mds_core.config import BagConfig, DataConfig, FootageConfig, ModelConfig
from mds_core.data.davis import find_davis_sequences
from mds_core.data.factory import build_dataset, open_sequences
from mds_core.data.kitti_odometry import find_kitti_odometry_sequences
from mds_core.data.lidar_clips import find_lidar_clips
from mds_core.data.sequence_folder import DataError
from mds_core.data.video import VideoSequence, find_video_sequences
from mds_core.evaluation.motion_segmentation import POSITIVE_LABEL


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_untrained_checkpoint(tmp_path_factory.mktemp("model") / "m.pt", ModelConfig(
        width=96, height=64, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=2))


# ------------------------------------------------------------------------------------------ readers
def test_kitti_odometry_grey_and_colour_cameras_calibration_poses_and_times(tmp_path):
    root = kitti_odometry_root(tmp_path)
    grey, = find_kitti_odometry_sequences(root, camera="image_0")
    assert grey.name == "00" and len(grey) == FRAMES and grey.frame_id(2) == "000002"
    image = grey.image(1)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()  # grey -> RGB
    matrix, size = grey.intrinsics()
    assert size == (W, H) and np.allclose(matrix, np.reshape(P0, (3, 4))[:, :3])
    assert np.allclose(grey.poses(), poses(FRAMES), atol=1e-6)  # camera 0: the file's poses
    assert grey.timestamps() == pytest.approx([0.1036 * i for i in range(FRAMES)])
    assert grey.depth(0) is None and grey.motion(0) is None

    colour, = find_kitti_odometry_sequences(root)  # image_2 when there is one
    assert colour.camera == "image_2"
    assert np.allclose(colour.intrinsics()[0], np.reshape(P2, (3, 4))[:, :3])
    expected = cv2.cvtColor(texture(1), cv2.COLOR_BGR2RGB)
    assert np.array_equal(colour.image(1), expected)
    # camera 2's centre is 6 cm left of camera 0's: world_from_2 = world_from_0 @ [I | -t_2]
    t2 = np.linalg.solve(np.reshape(P2, (3, 4))[:, :3], np.reshape(P2, (3, 4))[:, 3])
    assert t2[0] == pytest.approx(0.0599, abs=1e-3)
    for truth, pose in zip(poses(FRAMES), colour.poses()):
        assert np.allclose(pose[:3, :3], truth[:3, :3], atol=1e-6)
        assert np.allclose(pose[:3, 3], truth[:3, 3] - truth[:3, :3] @ t2, atol=1e-6)
    # one sequence folder works as the root too
    assert len(find_kitti_odometry_sequences(root / "sequences" / "00", camera="image_0")[0]) == FRAMES


def test_kitti_sequence_folders_with_bare_calibration_lines(tmp_path):
    root = visual_slam_root(tmp_path)
    left, = open_sequences("kitti_odometry", root, FootageConfig(sequences=["KITTI_sequence_1"]))
    assert left.camera == "image_l" and len(left) == FRAMES and left.image(0).shape == (H, W, 3)
    assert np.allclose(left.intrinsics()[0], np.reshape(P0, (3, 4))[:, :3])
    assert len(left.poses()) == FRAMES and np.allclose(left.poses()[3], poses(FRAMES)[3], atol=1e-6)
    assert left.timestamps() is None
    right, = find_kitti_odometry_sequences(root / "KITTI_sequence_1", camera="image_r")
    assert right.poses()[2][0, 3] == pytest.approx(poses(FRAMES)[2][0, 3] + 0.537 * np.cos(0.04), abs=1e-3)


def test_davis_frames_labels_and_intrinsics_from_focal_or_field_of_view(tmp_path):
    root = davis_root(tmp_path)
    davis_root(tmp_path, name="camel")
    sequence, = find_davis_sequences(root, ["bear"], fov=90.0)
    assert len(sequence) == FRAMES and sequence.image(0).shape == (H, W, 3) and sequence.image(0).dtype == np.uint8
    matrix, size = sequence.intrinsics()
    assert size == (W, H)
    assert np.allclose(matrix, [[32.0, 0, 31.5], [0, 32.0, 15.5], [0, 0, 1]])  # f = (W / 2) / tan(45 deg)
    labels = sequence.motion(2)
    assert labels.dtype == np.uint8 and labels.shape == (H, W)
    assert (labels[8:20, 12:32] == POSITIVE_LABEL).all() and labels.sum() == 12 * 20 * POSITIVE_LABEL
    assert set(np.unique(labels)) == {0, POSITIVE_LABEL}
    by_focal = find_davis_sequences(root, focal=500.0)
    assert [s.name for s in by_focal] == ["bear", "camel"] and by_focal[1].intrinsics()[0][0, 0] == 500.0


def test_lidar_clips_place_each_sources_points_and_keep_the_nearer_of_two(tmp_path):
    root = lidar_clips_root(tmp_path / "assets")
    kitti, nuscenes = sorted(find_lidar_clips(root), key=lambda clip: clip.name)
    assert kitti.name == "2011_09_26_drive_0001_sync/image_02" and nuscenes.name == "scene-0001/FRONT"
    matrix, size = kitti.intrinsics()
    np.testing.assert_allclose(matrix, np.array(P2).reshape(3, 4)[:, :3])
    assert size == (W, H)
    assert nuscenes.intrinsics()[0][0, 0] == 50.0
    for clip in (kitti, nuscenes):  # (row, column) for KITTI, (x, y) for nuScenes: the same pixels
        depth = clip.depth(0)
        assert depth.shape == (H, W) and depth.dtype == np.float32
        assert depth[3, 7] == 4.0  # two points on one pixel: the nearer one
        assert depth[H // 2, 5] == pytest.approx(40.0) and depth[H - 1, 5] == pytest.approx(40.0 / (H // 2))
        assert np.count_nonzero(depth) == (H - H // 2) * W + 1 and clip.motion(0) is None
    assert [kitti.depth(i) is None for i in range(3)] == [False] * 3
    assert [nuscenes.depth(i) is None for i in range(3)] == [False, True, True]  # lidar on the first frame only
    assert [c.name for c in open_sequences("lidar_clips", root, FootageConfig(sequences=["scene-0001/FRONT"]))] == [
        "scene-0001/FRONT"]
    # broken input: one clear error each
    np.save(nuscenes.folder / "depth" / "000000.npy", np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"expected \(N, 3\)"):
        nuscenes.depth(0)
    (nuscenes.folder / "rgb" / "cam.json").write_text("{}")
    with pytest.raises(DataError, match="camera_intrinsic"):
        find_lidar_clips(root)[1].intrinsics()
    with pytest.raises(DataError, match="no lidar clips"):
        find_lidar_clips(root / "tiny_kitti" / "2011_09_26" / "2011_09_26_drive_0001_sync" / "image_02" / "depth")


def test_video_frames_subsampling_and_memory_fallback(tmp_path):
    path = write_video(tmp_path / "drive.avi", frames=12, fps=30.0)
    every = VideoSequence(path, focal=50.0)
    assert len(every) == 12 and every.video_fps == pytest.approx(30.0)
    image = every.image(5)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert abs(float(image.mean()) - float(texture(5).mean())) < 4  # MJPG is lossy
    matrix, size = every.intrinsics()
    assert size == (W, H) and np.allclose(matrix, [[50, 0, 31.5], [0, 50, 15.5], [0, 0, 1]])

    ten = VideoSequence(path, focal=50.0, fps=10.0)  # every 3rd frame of 30 fps
    assert len(ten) == 4 and [ten.frame_id(i) for i in range(4)] == ["000000", "000003", "000006", "000009"]
    assert np.array_equal(ten.image(2), every.image(6)) and ten.timestamps() == pytest.approx([0, 0.1, 0.2, 0.3])
    assert len(VideoSequence(path, focal=50.0, fps=100.0)) == 12  # faster than the video: every frame

    compressed = VideoSequence(path, focal=50.0, raw_memory_mb=0)  # over the budget: PNG in memory, lossless
    assert all(np.array_equal(compressed.image(i), every.image(i)) for i in range(12))

    write_video(tmp_path / "other.avi", frames=5, seed=1)
    (tmp_path / "notes.txt").write_text("not a video")
    assert [s.name for s in find_video_sequences(tmp_path, focal=50.0)] == ["drive", "other"]
    assert [len(s) for s in find_video_sequences(tmp_path, ["other"], fov=60.0)] == [5]


def test_training_reads_the_new_formats_through_data_config(tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=12)
    data = DataConfig(format="video", root=str(video), footage=FootageConfig(focal=50.0, fps=10.0))
    dataset = build_dataset(data, ModelConfig(height=64, width=96), training=True)
    assert len(dataset) == 2  # 4 frames kept, sources -1 and +1
    sample = dataset[0]
    assert tuple(sample.images.shape) == (3, 3, 64, 96)
    assert sample.intrinsics[0, 0].item() == pytest.approx(50.0 * 96 / W)
    args = build_parser().parse_args(["train", "--data", str(tmp_path), "--format", "davis", "--fov", "70",
                                      "--sequence", "bear", "--set", "optim.max_steps=1"])
    from mds_core.cli.main import _train_config

    config = _train_config(args)
    assert config.data.format == "davis" and config.data.footage.fov == 70.0
    assert config.data.footage.sequences == ["bear"]


# ----------------------------------------------------------------------------------------- errors
def _user_error(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"mds {argv[0]}: error: ") and message in err, err


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, checkpoint):
    infer = ["infer", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "out"), "--device", "cpu"]
    (tmp_path / "empty").mkdir()
    # KITTI odometry: no calibration, no P2 for image_2, poses that do not match the frames
    no_calib = kitti_odometry_root(tmp_path / "no_calib")
    (no_calib / "sequences" / "00" / "calib.txt").unlink()
    _user_error(capsys, [*infer, "--input", str(no_calib), "--format", "kitti_odometry"], "missing calibration file")
    _user_error(capsys, [*infer, "--input", str(no_calib / "sequences" / "00"), "--format", "kitti_odometry"],
                "00/calib.txt")
    no_p2 = visual_slam_root(tmp_path / "no_p2")
    shutil.copytree(no_p2 / "KITTI_sequence_1" / "image_l", no_p2 / "KITTI_sequence_1" / "image_2")
    _user_error(capsys, [*infer, "--input", str(no_p2), "--format", "kitti_odometry", "--camera", "image_2"],
                "no P2 (the projection matrix of image_2)")
    short = kitti_odometry_root(tmp_path / "short", pose_count=3)
    _user_error(capsys, ["eval-odometry", "--estimate", str(short / "poses" / "00.txt"), "--ground-truth", str(short),
                         "--format", "kitti_odometry"], "has 3 poses for the 4 images")
    _user_error(capsys, [*infer, "--input", str(tmp_path / "empty"), "--format", "kitti_odometry"],
                "holds no KITTI odometry sequences")
    # DAVIS: no --focal / --fov, annotations missing for a frame, both camera options, no sequences
    davis = davis_root(tmp_path / "davis")
    _user_error(capsys, [*infer, "--input", str(davis), "--format", "davis"],
                "has no calibration: give the focal length with --focal PIXELS or the horizontal field of view")
    uneven = davis_root(tmp_path / "uneven", annotations=FRAMES - 1)
    _user_error(capsys, [*infer, "--input", str(uneven), "--format", "davis", "--fov", "60"],
                "4 images in")
    _user_error(capsys, [*infer, "--input", str(uneven), "--format", "davis", "--fov", "60"], "but 3 annotations")
    _user_error(capsys, [*infer, "--input", str(davis), "--format", "davis", "--fov", "60", "--focal", "9"], "not both")
    _user_error(capsys, [*infer, "--input", str(davis), "--format", "davis", "--fov", "60", "--sequence", "cow"],
                "no sequence named cow (there are: bear)")
    _user_error(capsys, [*infer, "--input", str(davis), "--format", "davis", "--fov", "60", "--fps", "5"],
                "--fps (data.footage.fps) subsamples videos")
    _user_error(capsys, [*infer, "--input", str(tmp_path / "empty"), "--format", "davis", "--fov", "60"],
                "holds no DAVIS sequences")
    # videos: no --focal, an unreadable file, an empty folder, a missing file, two videos for one sequence
    video = write_video(tmp_path / "videos" / "a.avi")
    _user_error(capsys, [*infer, "--input", str(video), "--format", "video"], "has no calibration")
    (tmp_path / "broken.avi").write_text("not a video")
    _user_error(capsys, [*infer, "--input", str(tmp_path / "broken.avi"), "--format", "video", "--focal", "50"],
                "cannot read video")
    _user_error(capsys, [*infer, "--input", str(tmp_path / "empty"), "--format", "video", "--focal", "50"],
                "holds no videos")
    _user_error(capsys, [*infer, "--input", str(tmp_path / "gone.mp4"), "--format", "video", "--focal", "50"],
                "does not exist")
    write_video(tmp_path / "videos" / "b.avi")
    _user_error(capsys, [*infer, "--input", str(tmp_path / "videos"), "--format", "video", "--focal", "50"],
                "holds 2 sequences (a, b): choose one with --sequence NAME")
    _user_error(capsys, [*infer, "--input", str(video), "--format", "video", "--focal", "-1"], "must be > 0 pixels")
    _user_error(capsys, [*infer, "--input", str(short), "--format", "kitti_odometry", "--focal", "50"],
                "--format kitti_odometry has its own")
    _user_error(capsys, ["eval", "--checkpoint", str(checkpoint), "--data", str(video), "--format", "video",
                         "--focal", "50", "--device", "cpu", "--quiet"],
                "no frame has ground-truth depth or motion labels (mds eval scores depth or motion labels;")
    _user_error(capsys, ["bag-from-video", str(tmp_path / "broken.avi"), "--focal", "50", "--output",
                         str(tmp_path / "bag")], "cannot read video")
    with pytest.raises(DataError, match="does not exist"):
        find_davis_sequences(tmp_path / "nowhere", fov=60.0)
    # and from a process of its own: exit status 2, one line on stderr
    done = subprocess.run([sys.executable, "-m", "mds_core.cli", "bag-from-video", str(video), "--output",
                           str(tmp_path / "bag")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        done.stderr.strip()] and "--focal PIXELS" in done.stderr, done.stderr


# ------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("layout", ["kitti_odometry", "kitti_sequence", "davis", "video"])
def test_infer_on_every_format(layout, tmp_path, checkpoint, capsys):
    if layout == "kitti_odometry":
        source, options = kitti_odometry_root(tmp_path / "kitti"), ["--format", "kitti_odometry", "--camera", "image_0"]
    elif layout == "kitti_sequence":
        source, options = visual_slam_root(tmp_path / "slam") / "KITTI_sequence_1", ["--format", "kitti_odometry"]
    elif layout == "davis":
        source, options = davis_root(tmp_path / "davis"), ["--format", "davis", "--fov", "60"]
    else:
        source, options = write_video(tmp_path / "clip.avi", frames=12), ["--format", "video", "--focal", "50",
                                                                          "--fps", "10"]
    out = tmp_path / "out"
    assert main(["infer", "--checkpoint", str(checkpoint), "--input", str(source), *options, "--output", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    assert f"wrote {FRAMES} frames" in capsys.readouterr().out
    depths = sorted((out / "depth").glob("*.npy"))
    assert len(depths) == FRAMES and len(list((out / "panels").glob("*.png"))) == FRAMES
    depth = np.load(depths[1])
    assert depth.shape == (H, W) and np.isfinite(depth).all() and (depth > 0).all()
    assert len(list((out / "masks").glob("*.npy"))) == FRAMES - 1  # the first frame has no previous one


def test_eval_scores_the_motion_of_davis_without_depth(tmp_path, checkpoint, capsys):
    davis = davis_root(tmp_path / "davis")
    output = tmp_path / "eval" / "davis.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(davis), "--format", "davis", "--fov", "60",
                 "--device", "cpu", "--quiet", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "depth: not scored (no ground-truth depth)" in printed and "### Motion segmentation" in printed
    assert "Chance: prevalence " in printed and "| mask/all |" in printed and f"wrote {output}" in printed
    report = json.loads(output.read_text())
    assert report["depth"] is None and report["situations"] == {}
    motion = report["motion_segmentation"]
    assert motion["num_images"] == FRAMES - 1  # the first frame has no previous one
    positives = 12 * 20 * (FRAMES - 1)  # the annotated box of each frame scored, at the labels' size
    assert motion["num_positive"] == positives and motion["num_positive"] + motion["num_negative"] == (FRAMES - 1) * H * W
    assert 0.0 <= motion["average_precision"] <= 1.0 and 0.0 <= motion["best_f1"] <= 1.0
    summary = report["motion_scores"]["mask/all"]
    assert summary["prevalence"] == pytest.approx(positives / ((FRAMES - 1) * H * W))
    assert summary["average_precision"] == pytest.approx(motion["average_precision"])
    assert report["moving_objects"]["images"] == FRAMES - 1
    assert "depth: not scored (no ground-truth depth)" in output.with_suffix(".md").read_text()
    # the oracle rung takes the ground-truth depth as its depth: it cannot run without
    oracle = write_untrained_checkpoint(tmp_path / "oracle.pt", ModelConfig(
        width=96, height=64, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=2,
        depth_source="ground_truth"))
    _user_error(capsys, ["eval", "--checkpoint", str(oracle), "--data", str(davis), "--format", "davis", "--fov", "60",
                         "--device", "cpu", "--quiet"], "bear frame 00001 has no ground-truth depth, which this model")
    # a model with one component segments no motion: with no depth either there is nothing to score
    single = write_untrained_checkpoint(tmp_path / "k1.pt", ModelConfig(
        width=96, height=64, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=1))
    _user_error(capsys, ["eval", "--checkpoint", str(single), "--data", str(davis), "--format", "davis", "--fov", "60",
                         "--device", "cpu", "--quiet"], "this model segments no motion (one component)")


def test_odometry_on_kitti_odometry_scored_against_its_poses(tmp_path, checkpoint, capsys):
    root = kitti_odometry_root(tmp_path / "kitti")
    trajectory = tmp_path / "traj.txt"
    assert main(["odometry", "--checkpoint", str(checkpoint), "--input", str(root), "--format", "kitti_odometry",
                 "--output", str(trajectory), "--device", "cpu"]) == 0
    assert f"wrote {FRAMES} poses" in capsys.readouterr().out
    stamps = [float(line.split()[0]) for line in trajectory.read_text().splitlines() if not line.startswith("#")]
    assert stamps == pytest.approx([0.1036 * i for i in range(FRAMES)])  # times.txt
    assert main(["eval-odometry", "--estimate", str(trajectory), "--ground-truth", str(root),
                 "--format", "kitti_odometry", "--sequence", "00"]) == 0
    assert "sim3 alignment" in capsys.readouterr().out
    _user_error(capsys, ["eval-odometry", "--estimate", str(trajectory), "--ground-truth", str(tmp_path / "v.avi"),
                         "--format", "video", "--focal", "50"], "does not exist")
    write_video(tmp_path / "v.avi")
    _user_error(capsys, ["eval-odometry", "--estimate", str(trajectory), "--ground-truth", str(tmp_path / "v.avi"),
                         "--format", "video", "--focal", "50"], "no ground-truth camera poses")


def test_bag_from_video_is_read_back_by_the_bag_reader(tmp_path, capsys):
    from rosbags.highlevel import AnyReader

    from mds_core.data.rosbag import BagReader, load_bag_sequences

    video = write_video(tmp_path / "clip.avi", frames=12, fps=30.0)
    bag = tmp_path / "bag"
    assert main(["bag-from-video", str(video), "--focal", "50", "--output", str(bag), "--fps", "10", "--quiet"]) == 0
    assert "wrote 4 frames (64x32, fx 50.0)" in capsys.readouterr().out
    topics = BagReader(bag).topics
    assert topics["/camera/image_raw"].msgtype == "sensor_msgs/msg/Image" and topics["/camera/image_raw"].count == 4
    assert topics["/camera/camera_info"].msgtype == "sensor_msgs/msg/CameraInfo"
    sequences, _, _ = load_bag_sequences(BagConfig(paths=[str(bag)], stationary_threshold=0.0), H, W, [-1, 1])
    assert sum(len(s) for s in sequences) == 4
    matrix, size = sequences[0].intrinsics()
    assert size == (W, H) and np.allclose(matrix, [[50, 0, 31.5], [0, 50, 15.5], [0, 0, 1]])
    assert abs(float(sequences[0].image(1).mean()) - float(texture(3).mean())) < 4  # frame 3 of the video
    assert sequences[0].stamp(1) - sequences[0].stamp(0) == pytest.approx(0.1)

    davis = davis_root(tmp_path / "davis")
    other = tmp_path / "davis_bag"
    assert main(["bag-from-video", str(davis), "--format", "davis", "--fov", "90", "--output", str(other),
                 "--topic-prefix", "/front", "--storage", "sqlite3", "--quiet"]) == 0
    # DAVIS's annotations travel with the frames, as ground truth the bag's training ignores
    topics = BagReader(other).topics
    assert set(topics) == {"/front/image_raw", "/front/camera_info", "/front/motion_gt"}
    assert topics["/front/motion_gt"].count == FRAMES
    sequences, _, _ = load_bag_sequences(BagConfig(paths=[str(other)], stationary_threshold=0.0), H, W, [-1, 1])
    assert sum(len(s) for s in sequences) == FRAMES
    with AnyReader([other]) as reader:
        connection = next(c for c in reader.connections if c.topic == "/front/motion_gt")
        first = reader.deserialize(next(reader.messages([connection]))[2], connection.msgtype)
    labels = np.frombuffer(bytes(first.data), np.uint8).reshape(first.height, first.width)
    assert first.encoding == "mono8" and labels[14, 20] == POSITIVE_LABEL and labels[2, 2] == 0
    _user_error(capsys, ["bag-from-video", str(video), "--focal", "50", "--output", str(bag)], "exists already")


def test_video_rate_is_the_nearest_one_and_a_truncated_video_is_refused(tmp_path):
    from mds_core.data.video import frame_step

    assert frame_step(25.0, 10.0, tmp_path) == 3  # 8.3 fps is nearer to 10 than 12.5
    assert frame_step(30.0, 10.0, tmp_path) == 3 and frame_step(30.0, 7.0, tmp_path) == 4  # 7.5 fps, not 6
    assert frame_step(30.0, 100.0, tmp_path) == 1
    whole = write_video(tmp_path / "whole.avi", frames=12, fps=30.0).read_bytes()
    (tmp_path / "cut.avi").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="truncated or damaged"):
        VideoSequence(tmp_path / "cut.avi", focal=50.0)
