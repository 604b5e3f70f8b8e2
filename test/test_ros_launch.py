"""Launch files, the package's own runner, the parameter file, the RViz config and the ROS demo."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy")

from ros_support import REPO_ROOT, Probe, RosProcess, ros_environment
from sensor_msgs.msg import Image

from mds_core.config import ModelConfig
from mds_core.tools.benchmark import write_untrained_checkpoint
from mds_core.tools.synth import SynthConfig, write_rosbag
from mds_ros.parameters import PerceptionParameters, validate_value
from mds_ros.tools.launch_spec import PerceptionLaunch, ReplayLaunch, share_path

pytestmark = pytest.mark.ros

NODE = "/mds_perception"
OUTPUT_TOPICS = {f"{NODE}/{name}" for name in ("depth/image", "depth/camera_info", "labels", "overlay", "masks",
                                                "motions", "points")}


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
    assert {"Image", "PointCloud2", "PoseArray"} <= set(displays)


def test_node_specs_match_launch_arguments(checkpoint):
    specs = PerceptionLaunch(camera_namespace="/front", image_topic="img", checkpoint=str(checkpoint),
                             rviz=True).nodes()
    node, rviz = specs
    args = node.ros_arguments()
    assert node.module == "mds_ros.perception_node" and rviz.executable == "rviz2" and not rviz.required
    assert args[args.index("--params-file") + 1] == str(share_path("config/mds_node.yaml"))
    assert "image_topic:=/front/img" in args and "camera_info_topic:=/front/camera_info" in args
    assert f"checkpoint:={checkpoint}" in args and "__node:=mds_perception" in args
    assert ReplayLaunch(bag="b", rate=2.0).nodes()[0].arguments[:3] == ["b", "--rate", "2.0"]


def test_launch_files_produce_the_runner_node_list():
    """Where the ROS launch tools exist (a ROS install), the launch files describe the same nodes."""
    pytest.importorskip("launch")
    pytest.importorskip("launch_ros")
    import importlib.util

    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchContext

    for name in ("mds.launch.py", "mds_replay.launch.py"):
        spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO_ROOT / "launch" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        description = module.generate_launch_description()
        declared = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
        assert set(vars(PerceptionLaunch())) <= declared
        context = LaunchContext()
        context.launch_configurations.update({"checkpoint": "m.pt", "bag": "b"})
        for entity in description.entities:
            if isinstance(entity, DeclareLaunchArgument):
                context.launch_configurations.setdefault(entity.name, entity.default_value[0].perform(context))
        nodes = [a for e in description.entities if isinstance(e, OpaqueFunction) for a in e.execute(context)]
        assert [n.node_executable for n in nodes][:1] == ["mds_node"]


def test_runner_starts_the_launch_nodes_and_stops_them_on_ctrl_c(checkpoint, tmp_path):
    bag = write_rosbag(tmp_path / "bag", SynthConfig(width=96, height=64, num_frames=6, seed=4))
    env = ros_environment()
    with Probe(env) as probe:
        probe.subscribe(f"{NODE}/depth/image", Image)
        with RosProcess("mds_ros.tools.runner", ["--checkpoint", checkpoint, "--device", "cpu", "--bag", bag,
                                           "--rate", "0.5", "--loop", "0"],  # loop until stopped: discovery may be slow
                        env=env, log_path=tmp_path / "runner.log") as runner:
            probe.wait_for_messages(f"{NODE}/depth/image", 3, timeout=90)
            assert runner.running
            code = runner.stop(sigint_timeout=60)  # the runner stops its children first
        assert code == 0, runner.log()
        assert probe.node.count_publishers(f"{NODE}/depth/image") == 0 or _eventually_gone(probe)


def _eventually_gone(probe: Probe) -> bool:
    from ros_support import wait_until

    wait_until(lambda: probe.node.count_publishers(f"{NODE}/depth/image") == 0, 20,
               message="the node kept running after the runner stopped")
    return True


def test_ros_demo_end_to_end(checkpoint, tmp_path):
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "mds_core.cli", "ros-demo", "--checkpoint", str(checkpoint), "--frames", "6",
               "--output", str(out), "--device", "cpu"]
    with RosProcess(command, env=ros_environment(), log_path=tmp_path / "demo.log") as demo:
        assert demo.wait(240) == 0, demo.log()
    summary = (out / "summary.md").read_text()
    assert "Frames in: 6" in summary and "Depth error against ground truth" in summary
    assert (out / "ros_demo.png").stat().st_size > 0

    from rosbags.highlevel import AnyReader

    with AnyReader([out / "recorded"]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    # a frame arriving while the previous one is still in the networks is dropped (newest kept)
    numbers = re.search(r"Frames in: 6; processed: (\d+); dropped \(newest kept\): (\d+); malformed: 0; "
                        r"resets: (\d+)", summary)
    processed, dropped, resets = (int(v) for v in numbers.groups())
    assert processed + dropped == 6 and processed >= 3
    assert counts[f"{NODE}/depth/image"] == processed and counts[f"{NODE}/labels"] == processed - resets
