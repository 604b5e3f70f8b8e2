"""Launch files, the package's own runner, the parameter file, the RViz config and the ROS demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy")

from footage_layouts import davis_root
from ros_support import REPO_ROOT, Probe, RosProcess, ros_environment
from sensor_msgs.msg import Image

from mds_core.checkpoint import write_untrained_checkpoint
from mds_core.config import ModelConfig
from mds_core.tools.synth import SynthConfig, write_rosbag
from mds_ros.parameters import PerceptionParameters, validate_value
from mds_ros.tools.launch_file import LaunchFileError, declared_arguments, load_launch, share_path

pytestmark = pytest.mark.ros

NODE = "/mds_perception"
OUTPUT_TOPICS = {f"{NODE}/{name}" for name in ("depth/image", "depth/camera_info", "labels", "overlay", "masks",
                                                "moving_probability", "independent_flow", "motions", "ego_motion",
                                                "odometry", "path", "components", "points")}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("model") / "untrained.pt", ModelConfig(
        width=96, height=64, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=2))


def test_parameter_file_declares_every_parameter_with_valid_defaults():
    document = yaml.safe_load((REPO_ROOT / "config" / "mds_node.yaml").read_text())
    parameters = document["mds_perception"]["ros__parameters"]
    assert sorted(parameters) == sorted(PerceptionParameters.names())
    for name, value in parameters.items():
        assert validate_value(name, value) is None, name


def test_rviz_config_shows_the_node_outputs():
    document = yaml.safe_load((REPO_ROOT / "config" / "mds.rviz").read_text())
    displays = {d["Class"].split("/")[-1]: d for d in document["Visualization Manager"]["Displays"]}
    topics = {d["Topic"]["Value"] for d in document["Visualization Manager"]["Displays"] if "Topic" in d}
    assert {f"{NODE}/depth/image", f"{NODE}/overlay", f"{NODE}/points", f"{NODE}/motions",
            "/camera/image_raw"} <= topics
    assert topics - {"/camera/image_raw"} <= OUTPUT_TOPICS
    assert displays["PointCloud2"]["Color Transformer"] == "RGB8"
    assert {"Image", "PointCloud2", "PoseArray", "MarkerArray", "Path", "Odometry"} <= set(displays)
    assert displays["MarkerArray"]["Topic"]["Value"] == f"{NODE}/components" and displays["MarkerArray"]["Enabled"]


def test_launch_file_nodes_and_parameters(checkpoint):
    """What mds_launch reads from launch/mds.launch.xml: the nodes, their parameters, which are required."""
    (node,) = load_launch("mds.launch.xml", {"checkpoint": str(checkpoint), "camera_namespace": "/front",
                                             "image_topic": "img"})
    args = node.ros_arguments()
    assert (node.executable, node.name, node.required) == ("mds_node", "mds_perception", True)
    assert "mds_ros.perception_node" in node.command(sys.executable)[2]
    assert args[args.index("--params-file") + 1] == str(share_path("config/mds_node.yaml"))
    assert "image_topic:=/front/img" in args and "camera_info_topic:=/front/camera_info" in args
    assert f"checkpoint:={checkpoint}" in args and f"watch_checkpoint:={checkpoint}" in args
    assert "__node:=mds_perception" in args

    node, trainer = load_launch("mds.launch.xml", {"checkpoint": "m.pt", "online": "true", "online_output": "o.pt"})
    assert trainer.executable == "mds_trainer" and trainer.required
    assert node.parameters["watch_checkpoint"] == trainer.parameters["output_checkpoint"] == "o.pt"


def test_replay_launch_waits_only_for_the_topics_the_node_consumes():
    node, replay = load_launch("mds_replay.launch.xml", {"checkpoint": "m.pt", "bag": "b", "rate": "2.0"})
    assert node.required and not replay.required  # the node keeps running after the bag ends
    assert replay.arguments[:3] == ["b", "--rate", "2.0"]
    waits = [replay.arguments[i + 1] for i, a in enumerate(replay.arguments) if a == "--wait-for"]
    assert waits == ["/camera/image_raw=1", "/camera/camera_info=1"]
    assert "--wait-for-subscribers" not in replay.arguments  # a bag's other topics are not waited for
    assert replay.arguments[replay.arguments.index("--on-timeout") + 1] == "play"


def test_every_launch_argument_is_described_and_checkpoint_is_required():
    for name in ("mds.launch.xml", "mds_replay.launch.xml"):
        arguments = {a.name: a for a in declared_arguments(share_path(f"launch/{name}"))}
        assert all(a.description for a in arguments.values()), name
        assert arguments["checkpoint"].default is None, name
    with pytest.raises(LaunchFileError, match="missing required argument checkpoint"):
        load_launch("mds.launch.xml", {})
    with pytest.raises(LaunchFileError, match="missing required argument bag"):
        load_launch("mds_replay.launch.xml", {"checkpoint": "m.pt"})


def test_runner_refuses_a_missing_checkpoint_before_starting_anything(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mds_ros.tools.runner", "mds.launch.py", "--log-dir",
                             str(tmp_path / "logs")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "missing required argument checkpoint:=" in result.stderr
    assert not (tmp_path / "logs").exists()  # no node was started
    shown = subprocess.run([sys.executable, "-m", "mds_ros.tools.runner", "mds_replay.launch.xml", "--show-args"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "'bag':" in shown.stdout and "(required)" in shown.stdout


def test_a_failing_required_node_ends_the_launch_with_its_status(tmp_path):
    """The node refuses a missing checkpoint (exit 2): the runner stops the replayer and exits 2."""
    bag = write_rosbag(tmp_path / "bag", SynthConfig(width=96, height=64, num_frames=4, seed=4))
    with RosProcess("mds_ros.tools.runner", ["mds_replay.launch.xml", f"bag:={bag}",
                                             f"checkpoint:={tmp_path / 'missing.pt'}", "device:=cpu", "loop:=0",
                                             "--log-dir", tmp_path / "logs"],
                    env=ros_environment(), log_path=tmp_path / "runner.log") as runner:
        assert runner.wait(120) == 2, runner.log()
    assert "mds_perception exited with status 2" in runner.log()
    node_log = (tmp_path / "logs" / "mds_perception.log").read_text()
    assert "cannot load checkpoint" in node_log
    assert node_log.count("missing.pt") == 1, node_log  # the reason once, not as an error, a fatal and a print


def test_a_replayer_that_cannot_read_its_bag_ends_the_launch_with_its_status(checkpoint, tmp_path):
    """A wrong bag path: the replayer exits 2 at once, and the launch ends with 2 instead of leaving an
    idle node running until Ctrl-C."""
    with RosProcess("mds_ros.tools.runner", ["mds_replay.launch.xml", f"bag:={tmp_path / 'wrong' / 'path'}",
                                             f"checkpoint:={checkpoint}", "device:=cpu", "--log-dir", tmp_path / "logs"],
                    env=ros_environment(), log_path=tmp_path / "runner.log") as runner:
        assert runner.wait(120) == 2, runner.log()
    assert "mds_replay exited with status 2" in runner.log()
    assert "does not exist" in (tmp_path / "logs" / "mds_replay.log").read_text()


def test_runner_plays_a_bag_with_extra_topics_without_rviz_and_stops_on_ctrl_c(checkpoint, tmp_path):
    """The README's replay command on a bag that also carries a topic nobody subscribes to, with
    rviz:=true where rviz2 is not installed: a warning, and everything else runs."""
    bag = write_rosbag(tmp_path / "bag", SynthConfig(width=96, height=64, num_frames=6, seed=4),
                       depth_topic="/camera/depth_gt")
    env = ros_environment()
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not (Path(p) / "rviz2").exists())
    with Probe(env) as probe:
        probe.subscribe(f"{NODE}/depth/image", Image)
        with RosProcess("mds_ros.tools.runner", ["mds_replay.launch.xml", f"checkpoint:={checkpoint}", "device:=cpu",
                                                 f"bag:={bag}", "rate:=0.5", "loop:=0", "rviz:=true"],
                        env=env, log_path=tmp_path / "runner.log") as runner:  # loop: discovery may be slow
            probe.wait_for_messages(f"{NODE}/depth/image", 3, timeout=90)
            assert runner.running
            code = runner.stop(sigint_timeout=60)  # the runner stops its children first
        assert code == 0, runner.log()
        assert "WARNING: rviz:=true but rviz2 is not installed: starting everything else without it" in runner.log()
        assert probe.node.count_publishers(f"{NODE}/depth/image") == 0 or _eventually_gone(probe)


def test_ros_demo_on_a_bag_of_footage_scores_against_the_labels_it_carries(checkpoint, tmp_path):
    """``ros-demo --bag``: a bag from DAVIS-layout footage (frames, CameraInfo, the annotations as
    motion_gt, no depth) through the node; the picture and summary leave out the missing depth."""
    bag = tmp_path / "bag"
    made = subprocess.run([sys.executable, "-m", "mds_core.cli", "bag-from-video", str(davis_root(tmp_path / "davis")),
                           "--format", "davis", "--fov", "90", "--output", str(bag), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "mds_core.cli", "ros-demo", "--checkpoint", str(checkpoint), "--bag", str(bag),
               "--output", str(out), "--device", "cpu", "--rate", "0.05"]
    # 1.2 frames/s: the footage is 24 frames/s, and only 4 frames: on a loaded machine a faster replay lets the
    # node drop (newest kept) all but one, and a single frame makes no pair to score
    with RosProcess(command, env=ros_environment(), log_path=tmp_path / "demo.log") as demo:
        assert demo.wait(240) == 0, demo.log()
    summary = (out / "summary.md").read_text()
    assert "Replayed 4 frames of 64x32" in summary and "Frames in: 4" in summary, summary
    assert "the bag has no ground-truth depth" in summary
    assert re.search(r"Moving probability against the ground-truth movers \(\d frames\): AP [0-9.]+", summary), summary
    assert "image | depth (node) | components (node) | moving probability (node) | GT movers (red)" in summary
    assert (out / "ros_demo.png").stat().st_size > 0

    # a generated drive as image_transport's compressed stream, with its ground-truth depth beside it
    jpeg = tmp_path / "jpeg"
    made = subprocess.run([sys.executable, "-m", "mds_core.cli", "synth", str(jpeg), "--format", "bag",
                           "--image-format", "jpeg", "--frames", "4", "--width", "64", "--height", "32",
                           "--depth-topic", "/camera/depth_gt", "--sequences", "1"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    bag_dir = next(p.parent for p in jpeg.rglob("metadata.yaml"))
    compressed_out = tmp_path / "demo_jpeg"
    with RosProcess(command[:7] + [str(bag_dir), "--output", str(compressed_out), "--device", "cpu", "--rate", "0.5"],
                    env=ros_environment(), log_path=tmp_path / "demo_jpeg.log") as demo:
        assert demo.wait(240) == 0, demo.log()
    summary = (compressed_out / "summary.md").read_text()
    assert "Frames in: 4" in summary and "Depth error against ground truth (abs rel" in summary, summary
    assert "image | GT depth | depth (node)" in summary

    not_a_bag = tmp_path / "missing"
    refused = subprocess.run(command[:7] + [str(not_a_bag), "--output", str(out)], capture_output=True, text=True,
                             timeout=120, env=ros_environment())
    assert refused.returncode == 2 and "does not exist" in refused.stderr and "Traceback" not in refused.stderr


def _eventually_gone(probe: Probe) -> bool:
    from ros_support import wait_until

    wait_until(lambda: probe.node.count_publishers(f"{NODE}/depth/image") == 0, 20,
               message="the node kept running after the runner stopped")
    return True


def test_ros_demo_end_to_end(checkpoint, tmp_path):
    out = tmp_path / "demo"
    # the city drive: crossing traffic and pedestrians, the camera standing still (the node's outputs are
    # scored on those frames on their own)
    command = [sys.executable, "-m", "mds_core.cli", "ros-demo", "--checkpoint", str(checkpoint), "--frames", "6",
               "--output", str(out), "--device", "cpu", "--scene", "city"]
    with RosProcess(command, env=ros_environment(), log_path=tmp_path / "demo.log") as demo:
        assert demo.wait(240) == 0, demo.log()
    summary = (out / "summary.md").read_text()
    assert "Frames in: 6" in summary and "Depth error against ground truth" in summary
    assert (out / "ros_demo.png").stat().st_size > 0
    assert "moving probability (node) | GT: moving red, parked blue" in summary  # the picture's columns, explained
    standing = re.search(r"With the camera standing still \((\d) frames\): AP ([0-9.]+) \(a random score: (0\.\d+)\)",
                         summary)
    assert standing, summary
    # with the camera standing, ~/moving_probability shows what moves even for an untrained model: the optical
    # flow's evidence is averaged in (0.82 against a random 0.28 here; the masks alone are at chance)
    assert float(standing.group(2)) > 2 * float(standing.group(3)), summary

    from rosbags.highlevel import AnyReader

    with AnyReader([out / "recorded"]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    # a frame arriving while the previous one is still in the networks is dropped (newest kept)
    numbers = re.search(r"Frames in: 6; processed: (\d+); dropped \(newest kept\): (\d+); malformed: 0; "
                        r"resets: (\d+)", summary)
    processed, dropped, resets = (int(v) for v in numbers.groups())
    assert processed + dropped == 6 and processed >= 3
    assert counts[f"{NODE}/depth/image"] == processed and counts[f"{NODE}/labels"] == processed - resets
    # every frame with a decomposition (all but the resets, the first among them) brought all 11 outputs
    assert f"Outputs delivered: {processed - resets} of {processed - 1} frames after the first with all 11 " \
           "outputs recorded" in summary, summary
    # and ~/components marks moving objects (an arrow each) on those frames
    from visualization_msgs.msg import Marker

    with AnyReader([out / "recorded"]) as reader:
        connection = next(c for c in reader.connections if c.topic == f"{NODE}/components")
        arrows = sum(marker.type == Marker.ARROW for _, _, raw in reader.messages([connection])
                     for marker in reader.deserialize(raw, connection.msgtype).markers)
    assert arrows >= processed - resets, arrows
