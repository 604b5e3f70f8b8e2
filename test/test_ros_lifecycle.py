"""The nodes' lifecycle states, driven through their lifecycle services from another process: nothing
before activate, outputs while active, none while inactive with the model kept, a broken checkpoint's
configure failing recoverably, cleanup freeing the model, and Ctrl-C in any state."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("lifecycle_msgs")

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterType, ParameterValue
from ros_support import Probe, RosProcess, ros_environment, wait_until
from sensor_msgs.msg import Image
from test_ros_node import (
    CAMERA_H,
    CAMERA_W,
    NODE,
    LiveNode,
    frame,
    node_process,
    set_parameter,
    wait_for_diagnostics,
)

from mds_core.checkpoint import write_untrained_checkpoint
from mds_core.config import ModelConfig
from mds_ros.tools.launch_file import load_launch
from mds_ros.tools.lifecycle_client import LifecycleClient

pytestmark = pytest.mark.ros

CAMERA = "/camera/image_raw"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "untrained.pt"
    return write_untrained_checkpoint(path, ModelConfig(width=96, height=64, depth_encoder="resnet18",
                                                        pose_mask_encoder="resnet18", num_components=3))


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def diagnostics_of(probe: Probe, prefix: str) -> dict[str, str]:
    for message in reversed(probe.messages("/diagnostics")):
        for status in message.status:
            if status.name.startswith(prefix):
                return {kv.key: kv.value for kv in status.values} | {"_message": status.message}
    return {}


def wait_for_state_in_diagnostics(probe: Probe, prefix: str, state: str) -> dict[str, str]:
    probe.clear("/diagnostics")
    return wait_until(lambda: diagnostics_of(probe, prefix).get("lifecycle_state") == state
                      and diagnostics_of(probe, prefix), 20, message=f"diagnostics never said {state}")


def stopped_cleanly(process: RosProcess) -> None:
    """Ctrl-C: status 0 and no traceback."""
    os.kill(process.pid, signal.SIGINT)
    assert process.wait(30) == 0, process.log()
    assert "Traceback" not in process.log(), process.log()


def test_perception_node_transitions(checkpoint, tmp_path):
    env = ros_environment()
    rgb = np.random.default_rng(0).integers(0, 255, (CAMERA_H, CAMERA_W, 3), dtype=np.uint8)
    with node_process(checkpoint, env, tmp_path / "node.log", autostart=False, diagnostics_period=0.1) as node, \
            Probe(env) as probe:
        probe.subscribe(f"{NODE}/depth/image", Image)
        probe.subscribe(f"{NODE}/labels", Image)
        probe.subscribe("/diagnostics", DiagnosticArray)
        lifecycle = LifecycleClient(probe.node, NODE)
        assert lifecycle.state(timeout=60) == "unconfigured"
        values = wait_for_state_in_diagnostics(probe, "mds_perception", "unconfigured")
        assert values["models_loaded"] == "0" and "unconfigured" in values["_message"]
        # before activate: nobody listens to the camera, no output topic is offered
        assert probe.subscriber_count(CAMERA) == 0 and probe.publisher_count(f"{NODE}/depth/image") == 0
        unloaded_mb = resident_mb(node.pid)

        assert lifecycle.change("configure") and lifecycle.state() == "inactive"
        values = wait_for_state_in_diagnostics(probe, "mds_perception", "inactive")
        assert values["models_loaded"] == "1" and float(values["model_memory_mb"]) > 50
        assert probe.subscriber_count(CAMERA) == 0
        loaded_mb = resident_mb(node.pid)

        assert lifecycle.change("activate") and lifecycle.state() == "active"
        live = LiveNode(node, probe, rgb)  # waits for the subscriptions and an output
        live.send(2.0)

        assert lifecycle.change("deactivate") and lifecycle.state() == "inactive"
        wait_until(lambda: probe.subscriber_count(CAMERA) == 0, 20, message="still subscribed after deactivate")
        outputs = len(probe.messages(f"{NODE}/depth/image"))
        received = int(wait_for_state_in_diagnostics(probe, "mds_perception", "inactive")["frames_received"])
        for stamp in (3.0, 3.1, 3.2):
            live.publish(*frame(stamp, rgb))
        values = wait_for_state_in_diagnostics(probe, "mds_perception", "inactive")  # a period later
        assert int(values["frames_received"]) == received and len(probe.messages(f"{NODE}/depth/image")) == outputs
        assert values["models_loaded"] == "1"

        # re-activation keeps the model: no load, outputs again
        started = time.monotonic()
        assert lifecycle.change("activate")
        reactivate_seconds = time.monotonic() - started
        live = LiveNode(node, probe, rgb)
        assert wait_for_diagnostics(probe, "models_loaded", lambda v: v is not None)["models_loaded"] == "1"
        assert reactivate_seconds < 5.0

        assert lifecycle.change("deactivate") and lifecycle.change("cleanup")
        assert lifecycle.state() == "unconfigured"
        values = wait_for_state_in_diagnostics(probe, "mds_perception", "unconfigured")
        assert "model_memory_mb" not in values
        wait_until(lambda: probe.publisher_count(f"{NODE}/depth/image") == 0, 20, message="outputs still offered")
        cleaned_mb = resident_mb(node.pid)
        model_mb = loaded_mb - unloaded_mb
        assert model_mb > 50 and cleaned_mb < loaded_mb - 0.5 * model_mb, (unloaded_mb, loaded_mb, cleaned_mb)
        assert node.running, node.log()
        stopped_cleanly(node)  # Ctrl-C while unconfigured


def test_shutdown_transition_finalizes_an_active_node(checkpoint, tmp_path):
    env = ros_environment()
    with node_process(checkpoint, env, tmp_path / "node.log") as node, Probe(env) as probe:  # autostart
        lifecycle = LifecycleClient(probe.node, NODE)
        assert lifecycle.state(timeout=60) == "active"
        wait_until(lambda: probe.subscriber_count(CAMERA) == 1, 30, message="not subscribed after autostart")
        assert lifecycle.change("shutdown") and lifecycle.state() == "finalized"
        wait_until(lambda: probe.subscriber_count(CAMERA) == 0, 30, message="still subscribed when finalized")
        stopped_cleanly(node)


def test_a_failed_configure_is_recoverable(checkpoint, tmp_path):
    env = ros_environment()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with node_process(broken, env, tmp_path / "node.log", autostart=False) as node, Probe(env) as probe:
        probe.subscribe("/diagnostics", DiagnosticArray)
        lifecycle = LifecycleClient(probe.node, NODE)
        # the command line client (what `ros2 lifecycle set` does on a ROS install)
        refused = lifecycle_command(env, "configure")
        assert refused.returncode == 1 and "configure: refused" in refused.stdout and "state unconfigured" in \
            refused.stdout, refused.stdout + refused.stderr
        assert lifecycle.state() == "unconfigured"
        assert str(broken) in wait_for_state_in_diagnostics(probe, "mds_perception", "unconfigured")["last_problem"]
        # fixed in place: configure again
        shutil.copyfile(checkpoint, broken)
        assert lifecycle.change("configure") and lifecycle.state() == "inactive"
        # the checkpoint is fixed while configured, and may change again after cleanup
        refused = set_parameter(probe, "checkpoint", ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                                    string_value=str(checkpoint)))
        assert not refused.successful and "unconfigured" in refused.reason
        assert lifecycle.change("cleanup")
        assert set_parameter(probe, "checkpoint", ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                                 string_value=str(checkpoint))).successful
        assert lifecycle.change("configure")
        answer = lifecycle_command(env, "get")
        assert answer.returncode == 0 and answer.stdout.strip() == "inactive", answer.stdout + answer.stderr
        absent = subprocess.run([sys.executable, "-m", "mds_core.cli", "ros-lifecycle", "/no_such_node", "get",
                                 "--timeout", "2"], env=env, capture_output=True, text=True, timeout=60)
        assert absent.returncode == 2 and "Traceback" not in absent.stderr, absent.stderr
        assert absent.stderr.strip().startswith("mds ros-lifecycle: error: /no_such_node/get_state did not appear")
        stopped_cleanly(node)  # Ctrl-C while inactive


def lifecycle_command(env: dict, transition: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mds_core.cli", "ros-lifecycle", NODE, transition, "--timeout", "60"],
                          env=env, capture_output=True, text=True, timeout=120)


def trainer_message(probe: Probe) -> str:
    probe.clear("/diagnostics")
    wait_until(lambda: diagnostics_of(probe, "mds_trainer"), 20, message="no trainer diagnostics")
    return diagnostics_of(probe, "mds_trainer")["_message"]


def test_online_pair_under_the_lifecycle(checkpoint, tmp_path):
    """The launch file's online pair, not autostarted: the trainer trains only while it is active and the
    perception node is active too (pause_training), and stops cleanly on Ctrl-C while active."""
    env = ros_environment()
    node_spec, trainer_spec = load_launch("mds.launch.xml", {
        "checkpoint": str(checkpoint), "online": "true", "online_output": str(tmp_path / "online.pt"),
        "autostart": "false", "device": "cpu"})
    trainer_spec.parameters.update(status_period=0.1)
    assert trainer_spec.parameters["pause_with"] == NODE
    with RosProcess(node_spec.command(sys.executable), env=env, log_path=tmp_path / "node.log") as node, \
            RosProcess(trainer_spec.command(sys.executable), env=env, log_path=tmp_path / "trainer.log") as trainer, \
            Probe(env) as probe:
        probe.subscribe("/diagnostics", DiagnosticArray)
        perception, lifecycle = LifecycleClient(probe.node, NODE), LifecycleClient(probe.node, "/mds_trainer")
        assert lifecycle.state(timeout=60) == "unconfigured" and perception.state(timeout=60) == "unconfigured"
        assert wait_for_state_in_diagnostics(probe, "mds_trainer", "unconfigured")
        assert probe.subscriber_count(CAMERA) == 0
        assert lifecycle.change("configure") and lifecycle.change("activate")
        wait_until(lambda: probe.subscriber_count(CAMERA) == 1, 30, message="the trainer did not subscribe")
        # the trainer asks the perception node's state, then follows its transitions
        wait_until(lambda: "paused: /mds_perception is unconfigured" in trainer_message(probe), 30,
                   message="the trainer did not learn the perception node's state")
        assert perception.change("configure")
        wait_until(lambda: "paused: /mds_perception is inactive" in trainer_message(probe), 30,
                   message="the trainer did not pause for the inactive perception node")
        assert perception.change("activate")
        wait_until(lambda: "paused" not in trainer_message(probe), 30, message="the trainer did not resume")
        assert perception.change("deactivate")
        wait_until(lambda: "paused" in trainer_message(probe), 30, message="the trainer did not pause again")

        assert lifecycle.change("deactivate")
        wait_until(lambda: probe.subscriber_count(CAMERA) == 0, 30, message="the trainer is still subscribed")
        assert "inactive" in wait_for_state_in_diagnostics(probe, "mds_trainer", "inactive")["_message"]
        assert lifecycle.change("activate")
        wait_until(lambda: probe.subscriber_count(CAMERA) == 1, 30, message="the trainer did not subscribe again")
        stopped_cleanly(trainer)  # Ctrl-C while active
        assert node.running, node.log()
        assert perception.change("activate")
        stopped_cleanly(node)  # Ctrl-C while active
