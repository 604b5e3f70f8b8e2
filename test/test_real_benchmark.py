"""``mds real-benchmark``: every model trained and scored on small files in the KITTI odometry and DAVIS layouts."""

import json
import math
import os

import cv2
import numpy as np
import pytest
from footage_layouts import H, W, davis_root, kitti_odometry_root, lidar_clips_root

from mds_core.cli.main import main
from mds_core.evaluation.odometry import evaluate_trajectory, straight_line


def test_the_straight_line_is_exact_on_a_straight_drive_and_not_on_a_turn():
    straight = [np.eye(4) for _ in range(6)]
    for index, pose in enumerate(straight):
        pose[:3, 3] = [0.0, 0.0, 1.3 * index]
    assert evaluate_trajectory(straight_line(6), straight)[0].ate_rmse == pytest.approx(0.0, abs=1e-9)
    turn = [np.eye(4) for _ in range(20)]  # a quarter circle of radius 10
    for index, pose in enumerate(turn):
        angle = index * (math.pi / 2) / 19
        pose[:3, 3] = [10.0 * (1 - math.cos(angle)), 0.0, 10.0 * math.sin(angle)]
    assert evaluate_trajectory(straight_line(20), turn)[0].ate_rmse > 0.5


def test_real_benchmark_trains_and_scores_on_kitti_odometry_and_davis(tmp_path, capsys):
    kitti = kitti_odometry_root(tmp_path / "kitti", frames=6)
    davis = davis_root(tmp_path / "davis", frames=6, name="car-shadow")
    clips = lidar_clips_root(tmp_path / "assets")
    out = tmp_path / "real"
    args = ["real-benchmark", "--kitti-odometry", str(kitti), "--lidar-clips", str(clips), "--davis", str(davis),
            "--davis-sequences", "car-shadow", "--steps", "2", "--batch-size", "2", "--output", str(out)]
    assert main(args) == 0
    assert "| constant-velocity straight line |" in capsys.readouterr().out
    report = json.loads((out / "real.json").read_text())
    kitti_result, davis_result = report["sources"]
    assert kitti_result["source"]["name"] == "kitti_odometry" and davis_result["source"]["name"] == "davis"
    assert set(kitti_result["odometry"]) == {"K=1", "K=5", "scene flow"}
    for errors in kitti_result["odometry"].values():
        assert errors["00"]["frames"] == 6 and math.isfinite(errors["00"]["ate"])
    # the layout's camera turns 0.02 rad a frame: a line that never turns is off by that each frame (the
    # poses are written to 7 digits)
    line_rotation = kitti_result["straight_line"]["00"]["rpe_rotation_deg"]
    assert line_rotation == pytest.approx(math.degrees(0.02), rel=1e-4)
    # the KITTI models' depth on the lidar clips (4 frames with points), next to one constant depth per image
    lidar = kitti_result["lidar_depth"]
    assert set(lidar) == {"K=1", "K=5", "scene flow", "constant depth per image"}
    assert all(scores["images"] == 4 and 0.0 <= scores["a1"] <= 1.0 for scores in lidar.values())
    ramp = 40.0 / np.arange(1, H - H // 2 + 1)  # the layout's depths on each column, plus 4 m at one pixel
    truth = np.concatenate([np.tile(ramp, W), [4.0]])
    expected = np.mean(np.abs(np.median(truth) - truth) / truth)  # every pixel at the median depth
    assert lidar["constant depth per image"]["abs_rel"] == pytest.approx(expected, rel=1e-5)
    assert "| constant depth per image |" in (out / "real.md").read_text()
    assert set(davis_result["motion"]) == {"K=5", "scene flow"}  # K=1 has nothing to segment
    box = 12 * 20 / (H * W)  # the annotation's share of the frame
    for motion in davis_result["motion"].values():
        assert motion["prevalence"] == pytest.approx(box, rel=0.1)
        assert 0.0 <= motion["average_precision"] <= 1.0
    picture = cv2.imread(str(out / "real_davis.png"))
    assert picture.shape == (3 * 96, 6 * 192, 3)  # three moments of the one clip; six columns at the model's size
    assert (out / "trajectory_00.png").is_file() and "![kitti_odometry](trajectory_00.png)" in (out / "real.md").read_text()

    checkpoints = sorted((out / "davis").glob("*/checkpoints/last.pt"))
    written = [os.stat(path).st_mtime_ns for path in checkpoints]
    assert main([*args, "--reuse"]) == 0  # every model finished: scored again, not retrained
    assert [os.stat(path).st_mtime_ns for path in checkpoints] == written and len(written) == 3


def test_real_benchmark_says_what_is_wrong_with_its_sources(tmp_path, capsys):
    assert main(["real-benchmark", "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "mds real-benchmark: error: give at least one real source: --kitti-odometry ROOT and/or --davis ROOT"]
    assert main(["real-benchmark", "--davis", str(tmp_path / "nowhere"), "--output", str(tmp_path)]) == 2
    assert "--davis " in capsys.readouterr().err
