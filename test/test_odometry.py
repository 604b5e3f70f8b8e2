"""Visual odometry: chaining the ego-motion, Umeyama alignment, ATE and RPE, the trajectory files,
and ``mds odometry`` / ``mds eval-odometry`` on a generated sequence."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import HEIGHT, WIDTH, make_sequences

from mds_core.checkpoint import write_untrained_checkpoint
from mds_core.cli.main import main
from mds_core.config import ModelConfig
from mds_core.evaluation.odometry import (
    chain_poses,
    evaluate_trajectory,
    read_trajectory,
    scaled_poses,
    umeyama_alignment,
    write_kitti,
    write_tum,
)

pytestmark = pytest.mark.numerics  # run again under other CPU kernels in CI (docs/testing.md)


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    return make_sequences(tmp_path_factory.mktemp("data"), count=1, frames=6, width=WIDTH, height=HEIGHT) / "seq0"


def test_chained_ground_truth_motions_reproduce_the_trajectory(sequence):
    stamps, truth = read_trajectory(sequence)
    motions = [None] + [np.linalg.inv(truth[i]) @ truth[i - 1] for i in range(1, len(truth))]  # X_t = T_t X_t-1
    estimate = chain_poses(motions)
    errors, _ = evaluate_trajectory(estimate, truth, "se3")
    assert errors.ate_rmse < 1e-9 and errors.rpe_translation_rmse < 1e-9 and errors.rpe_rotation_rmse_deg < 1e-6
    # without metric scale: Sim(3) recovers the scale, SE(3) does not
    errors, _ = evaluate_trajectory(scaled_poses(estimate, 0.25), truth, "sim3")
    assert errors.ate_rmse < 1e-9 and errors.scale == pytest.approx(4.0)
    errors, _ = evaluate_trajectory(scaled_poses(estimate, 0.25), truth, "se3")
    assert errors.ate_rmse > 0.1 * errors.path_length
    # a reset (missing motion) repeats the pose
    assert np.allclose(chain_poses([None, None, motions[2]])[1], np.eye(4))


def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(30, 3))
    rotation = _rotation_about_z(0.7)
    target = 2.5 * points @ rotation.T + np.array([1.0, -2.0, 0.5])
    scale, r, t = umeyama_alignment(points, target, with_scale=True)
    assert scale == pytest.approx(2.5) and np.allclose(r, rotation) and np.allclose(t, [1.0, -2.0, 0.5])


def _rotation_about_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_tum_and_kitti_files_round_trip_and_bad_files_are_refused(sequence, tmp_path):
    stamps, truth = read_trajectory(sequence)
    _, from_tum = read_trajectory(write_tum(tmp_path / "t.txt", stamps, truth))
    _, from_kitti = read_trajectory(write_kitti(tmp_path / "k.txt", truth))
    for poses in (from_tum, from_kitti):
        assert max(np.abs(a - b).max() for a, b in zip(poses, truth)) < 1e-6
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="expected TUM"):
        read_trajectory(tmp_path / "bad.txt")


def test_odometry_and_its_evaluation_from_the_command_line(sequence, tmp_path, capsys):
    checkpoint = write_untrained_checkpoint(tmp_path / "m.pt", ModelConfig(
        width=WIDTH, height=HEIGHT, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=2))
    trajectory = tmp_path / "out" / "traj.txt"
    assert main(["odometry", "--checkpoint", str(checkpoint), "--input", str(sequence), "--output", str(trajectory),
                 "--device", "cpu"]) == 0
    assert "wrote 6 poses" in capsys.readouterr().out
    stamps, poses = read_trajectory(trajectory)
    _, kitti = read_trajectory(trajectory.with_suffix(".kitti.txt"))
    assert len(poses) == len(kitti) == 6 and stamps == pytest.approx(read_trajectory(sequence)[0])
    plot = tmp_path / "traj.png"
    assert main(["eval-odometry", "--estimate", str(trajectory), "--ground-truth", str(sequence),
                 "--plot", str(plot)]) == 0
    assert "sim3 alignment" in capsys.readouterr().out and plot.stat().st_size > 0
    assert main(["odometry", "--checkpoint", str(checkpoint), "--input", str(sequence), "--output",
                 str(trajectory), "--scale", "camera-height"]) == 2
    assert "needs --camera-height" in capsys.readouterr().err
    (tmp_path / "short.txt").write_text("0 0 0 0 0 0 0 1\n")
    assert main(["eval-odometry", "--estimate", str(tmp_path / "short.txt"), "--ground-truth", str(sequence)]) == 2
    assert "the estimate has 1 poses" in capsys.readouterr().err


def test_a_known_motion_gives_the_expected_pose_and_twist():
    from mds_core.evaluation.odometry import OdometryChain

    chain = OdometryChain()
    forward = np.eye(4)
    forward[2, 3] = -1.5  # the camera drives 1.5 units forward: points come 1.5 closer
    step = chain.add(forward, 0.1)
    assert np.allclose(step.pose[:3, 3], [0, 0, 1.5]) and np.allclose(step.linear, [0, 0, 15.0])
    assert np.allclose(step.angular, 0.0)
    turn = np.eye(4)
    turn[:3, :3] = _rotation_about_z(0.05).T  # points turn by -0.05 about the optical axis: the camera by +0.05
    step = chain.add(turn, 0.5)
    assert np.allclose(step.angular, [0, 0, 0.1]) and np.allclose(step.linear, 0.0)
    chain.reset()
    assert chain.segment == 1 and np.allclose(chain.pose[:3, 3], [0, 0, 1.5])  # a reset keeps the pose

    pytest.importorskip("nav_msgs")
    from std_msgs.msg import Header

    from mds_ros.outputs import PathHistory, odometry_msg, path_msg

    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec = 7
    message = odometry_msg(step, header, "odom", header.frame_id)
    assert (message.header.frame_id, message.child_frame_id, message.header.stamp.sec) == \
        ("odom", "camera_optical_frame", 7)
    assert message.pose.pose.position.z == pytest.approx(1.5) and message.twist.twist.angular.z == pytest.approx(0.1)
    path = path_msg([(header.stamp, np.eye(4)), (header.stamp, step.pose)], header, "odom")
    assert len(path.poses) == 2 and path.header.frame_id == "odom" and path.poses[1].pose.position.z == pytest.approx(1.5)
    # the node's history keeps path_length poses and sends ~/path at most every period
    history = PathHistory(3)
    for z in range(5):
        pose = np.eye(4)
        pose[2, 3] = z
        history.add(header.stamp, pose, "odom")
    assert [p.pose.position.z for p in history.message(header, "odom").poses] == [2.0, 3.0, 4.0]
    assert [history.due(0.5, t) for t in (10.0, 10.2, 10.5, 10.6)] == [True, False, True, False]
    assert all(history.due(0.0, t) for t in (11.0, 11.0, 11.1))


def test_a_long_chain_of_float32_motions_stays_a_rigid_pose():
    """A network's float32 rotation is orthonormal to about 1e-7; thousands of them chained must still give
    a rotation (the pose messages and TF need one) on the right heading."""
    from mds_core.evaluation.odometry import OdometryChain

    chain = OdometryChain()
    turn = np.eye(4)
    turn[:3, :3] = _rotation_about_z(0.01).T
    noisy = (turn * (1.0 + 3e-7)).astype(np.float32)  # scaled by 1 + 3e-7: not quite a rotation
    for _ in range(3000):
        step = chain.add(noisy, 0.1)
    rotation = step.pose[:3, :3]
    assert np.abs(rotation @ rotation.T - np.eye(3)).max() < 1e-12
    np.testing.assert_allclose(rotation, _rotation_about_z(30.0), atol=1e-5)  # 3000 turns of 0.01 rad
