"""Online adaptation: the training node learns on a live stream and the perception node, in another
process, swaps the new weights in between frames (observed as changed outputs on the topic)."""

from __future__ import annotations

import shutil
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray
from ros_support import Probe, RosProcess, large_image_driver, ros_environment, wait_until
from sensor_msgs.msg import CameraInfo, Image

from mds_core.checkpoint import write_untrained_checkpoint
from mds_core.config import ModelConfig
from mds_core.inference.predictor import Predictor
from mds_core.tools.synth import SynthConfig, generate_sequence
from mds_core.training.online import FrameBuffer, OnlineSettings, OnlineTrainer
from mds_ros.tools.launch_file import load_launch, share_path

pytestmark = pytest.mark.ros

NODE = "/mds_perception"
W, H = 96, 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_untrained_checkpoint(tmp_path_factory.mktemp("model") / "start.pt", ModelConfig(
        width=W, height=H, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=2))


@pytest.fixture(scope="module")
def frames():
    config = SynthConfig(width=W, height=H, num_frames=12, seed=11)
    return [frame.image for frame in generate_sequence(config)], config


def test_online_trainer_learns_on_buffered_frames_and_writes_atomic_checkpoints(checkpoint, frames, tmp_path):
    images, config = frames
    trainer = OnlineTrainer(checkpoint, tmp_path / "online.pt", OnlineSettings(batch_size=2, checkpoint_every=5),
                            device="cpu")
    assert trainer.step() is None  # nothing buffered yet: no triplets
    for index, image in enumerate(images):
        trainer.buffer.add(image, config.intrinsics(), 10.0 + 0.1 * index)
    losses = [trainer.step() for _ in range(15)]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    assert trainer.status.checkpoints_written == 3 and Predictor.from_checkpoint(tmp_path / "online.pt").checkpoint_step


def test_online_trainer_adapts_a_scene_flow_model_in_its_joint_stage(frames, tmp_path):
    images, config = frames
    start = write_untrained_checkpoint(tmp_path / "flow.pt", ModelConfig(
        width=W, height=H, depth_encoder="resnet18", pose_mask_encoder="resnet18", motion_model="scene_flow"))
    trainer = OnlineTrainer(start, tmp_path / "online.pt", OnlineSettings(batch_size=2, checkpoint_every=4),
                            device="cpu")
    assert trainer.state.stage.name == "joint" and trainer.state.model.mask_enabled
    for index, image in enumerate(images):
        trainer.buffer.add(image, config.intrinsics(), 10.0 + 0.1 * index)
    losses = [trainer.step() for _ in range(8)]
    assert all(np.isfinite(losses)) and trainer.status.checkpoints_written == 2
    before, after = Predictor.from_checkpoint(start).model, Predictor.from_checkpoint(tmp_path / "online.pt").model
    for name in ("depth_net", "ego_pose_net", "scene_flow_net"):  # every network adapts
        changed = [not np.allclose(p.detach(), q.detach()) for p, q in
                   zip(getattr(before, name).parameters(), getattr(after, name).parameters())]
        assert any(changed), name


def test_online_trainer_run_survives_a_failing_step_and_writes_a_last_checkpoint(checkpoint, frames, tmp_path):
    """The loop the training node runs: a failing step is reported and skipped; stopping at max_steps
    between two periodic checkpoints writes one more."""
    images, config = frames

    class FailsOnce(OnlineTrainer):
        failed = False

        def step(self):
            if not self.failed and self.status.steps == 1:
                self.failed = True
                raise RuntimeError("injected failure")
            return super().step()

    trainer = FailsOnce(checkpoint, tmp_path / "online.pt", OnlineSettings(batch_size=2, checkpoint_every=2),
                        device="cpu")
    for index, image in enumerate(images):
        trainer.buffer.add(image, config.intrinsics(), 10.0 + 0.1 * index)
    errors: list[Exception] = []
    trainer.run(threading.Event(), max_steps=3, on_error=errors.append, error_wait=0.0)
    assert [str(e) for e in errors] == ["injected failure"] and trainer.status.steps == 3
    assert trainer.status.checkpoints_written == 2  # step 2 (periodic) and step 3 (the end)
    assert Predictor.from_checkpoint(tmp_path / "online.pt").checkpoint_step == trainer.state.step


def test_frame_buffer_triplets_respect_gaps_and_time_going_backwards():
    buffer = FrameBuffer(capacity=6, size=(W, H))
    image, k = np.zeros((H, W, 3), np.uint8), np.eye(3)
    for stamp in (1.0, 1.1, 1.2, 3.0, 3.1, 3.2):  # the gap of 1.8 s makes no triplet
        buffer.add(image, k, stamp)
    assert [t.frame for t in buffer.snapshot().targets(0.5, [-1, 1])] == [1, 4]  # 1.1 and 3.1
    buffer.add(image, k, 3.3)  # the capacity drops 1.0, so 1.1 lost its previous frame
    assert [t.frame for t in buffer.snapshot().targets(0.5, [-1, 1])] == [3, 4]  # 3.1 and 3.2
    buffer.add(image, k, 0.5)  # time went backwards: the old frames are forgotten
    assert len(buffer) == 1


def test_online_training_node_weights_are_swapped_into_the_running_perception_node(checkpoint, frames, tmp_path):
    images, config = frames
    start = tmp_path / "start.pt"
    shutil.copy(checkpoint, start)
    online = tmp_path / "online.pt"
    perception, trainer = load_launch("mds.launch.xml", {"checkpoint": str(start), "device": "cpu", "online": "true",
                                                         "online_output": str(online)})
    perception.parameters.update(checkpoint_poll_period=0.2, diagnostics_period=0.2)
    trainer.parameters.update(batch_size=2, checkpoint_every=3, min_triplets=2, max_steps=3, status_period=0.2)
    env = ros_environment()
    period = 0.25
    k = config.intrinsics()
    with RosProcess(perception.command(sys.executable), env=env, log_path=tmp_path / "node.log") as node, \
            RosProcess(trainer.command(sys.executable), env=env, log_path=tmp_path / "trainer.log") as training, \
            Probe(env) as probe:
        probe.subscribe(f"{NODE}/depth/image", Image)
        probe.subscribe("/diagnostics", DiagnosticArray)
        image_pub = probe.publisher("/camera/image_raw", Image)
        info_pub = probe.publisher("/camera/camera_info", CameraInfo)
        probe.wait_for_subscribers("/camera/image_raw", 2, timeout=90)  # the perception and the training node
        probe.wait_for_subscribers("/camera/camera_info", 2, timeout=90)
        stop, sent = threading.Event(), []

        def camera() -> None:
            index = 0
            while not stop.wait(period):
                stamp = 100.0 + index * period
                image, info = Image(), CameraInfo()
                for message in (image, info):
                    message.header.stamp.sec, message.header.stamp.nanosec = int(stamp), int(stamp % 1 * 1e9)
                    message.header.frame_id = "cam"
                    message.height, message.width = H, W
                picture = images[index % len(images)]
                image.encoding, image.step, image.data = "rgb8", W * 3, picture.tobytes()
                info.k = k.flatten().tolist()
                sent.append((int(stamp * 1e9), picture))
                info_pub.publish(info)
                image_pub.publish(image)
                index += 1
        thread = threading.Thread(target=camera, daemon=True)
        thread.start()

        def status(name: str) -> dict[str, str]:
            for message in reversed(probe.messages("/diagnostics")):
                if message.status and message.status[0].name.startswith(name):
                    return {kv.key: kv.value for kv in message.status[0].values}
            return {}
        try:
            wait_until(lambda: status("mds_trainer").get("checkpoints_written") == "1", 180,
                       message="the training node wrote no checkpoint")
            wait_until(lambda: status("mds_perception").get("checkpoints_swapped") == "1", 60,
                       message="the perception node did not swap the new weights in")
            swapped_at = len(probe.messages(f"{NODE}/depth/image"))
            probe.wait_for_messages(f"{NODE}/depth/image", swapped_at + 3, timeout=60)
        finally:
            stop.set()
            thread.join()
        assert node.running and training.running, node.log() + training.log()

    initial = Predictor.from_checkpoint(start, device="cpu")
    adapted = Predictor.from_checkpoint(online, device="cpu")
    pictures = dict(sent)
    outputs = probe.messages(f"{NODE}/depth/image")
    stamp = outputs[-1].header.stamp.sec * 1_000_000_000 + outputs[-1].header.stamp.nanosec
    published = np.frombuffer(bytes(outputs[-1].data), np.float32).reshape(H, W)
    np.testing.assert_allclose(published, adapted.predict(pictures[stamp], k).depth, rtol=1e-4, atol=1e-5)
    assert not np.allclose(published, initial.predict(pictures[stamp], k).depth, rtol=1e-3)
    stamps = np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in outputs])
    gaps = np.diff(stamps[1:])
    assert gaps.max() <= 1.5 * period, f"the stream stalled: largest gap between outputs {gaps.max():.2f} s"


def test_one_process_mode_runs_both_nodes(checkpoint, tmp_path):
    env = ros_environment()
    online = tmp_path / "online.pt"
    command = [sys.executable, "-m", "mds_ros.training_node_online", "--ros-args",
               "--params-file", str(share_path("config/mds_node.yaml")),
               "--params-file", str(share_path("config/mds_trainer.yaml")),
               "-p", f"checkpoint:={checkpoint}", "-p", f"watch_checkpoint:={online}",
               "-p", f"output_checkpoint:={online}", "-p", "device:=cpu", "-p", "diagnostics_period:=0.2",
               "-p", "status_period:=0.2"]
    with RosProcess(command, env=env, log_path=tmp_path / "online.log") as process, Probe(env) as probe:
        probe.subscribe("/diagnostics", DiagnosticArray)
        names = lambda: {m.status[0].name.split(":")[0] for m in probe.messages("/diagnostics") if m.status}
        wait_until(lambda: names() >= {"mds_perception", "mds_trainer"}, 90,
                   message="both nodes should report on /diagnostics from the one process")
        probe.wait_for_subscribers("/camera/image_raw", 2, timeout=30)
        assert process.running
        assert process.stop(sigint_timeout=60) == 0, process.log()


def test_the_training_node_counts_camera_images_lost_on_the_way(checkpoint, tmp_path):
    """As the perception node: images the middleware reports lost (a driver's 2.7 MB images over UDP)."""
    trainer = load_launch("mds.launch.xml", {"checkpoint": str(checkpoint), "device": "cpu", "online": "true",
                                             "online_output": str(tmp_path / "online.pt")})[1]
    trainer.parameters.update(camera_info_source="parameters", intrinsics=[600.0, 600.0, 640.0, 360.0],
                              status_period=0.2, min_triplets=1000)  # counting only, no training
    env = ros_environment()
    with RosProcess(trainer.command(sys.executable), env=env, log_path=tmp_path / "trainer.log") as training, \
            Probe(env) as probe:
        probe.subscribe("/diagnostics", DiagnosticArray)
        probe.wait_for_subscribers("/camera/image_raw", 1, timeout=90)
        with large_image_driver(env, tmp_path, frames=90) as driver:
            assert driver.wait(60) == 0, driver.log()

        def lost() -> int:
            for message in reversed(probe.messages("/diagnostics")):
                if message.status and message.status[0].name.startswith("mds_trainer"):
                    return int({kv.key: kv.value for kv in message.status[0].values}["camera_messages_lost"])
            return 0
        wait_until(lambda: lost() > 0, 20, message="the training node counted no lost camera image")
        assert training.running, training.log()
