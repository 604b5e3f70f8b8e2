"""The node's logic in-process, without DDS: frame-stream resets, stamp pairing, the one-frame
mailbox, the checkpoint watcher, diagnostics levels and parameter validation. The same pieces run
in real node processes in test_ros_node.py and test_ros_hardening.py."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticStatus

from mds_core.checkpoint import write_untrained_checkpoint
from mds_core.config import ModelConfig
from mds_core.inference.predictor import Predictor
from mds_core.inference.streaming import FrameStream, ResetReason, StreamSettings
from mds_ros.diagnostics import DiagnosticsReporter, NodeStatistics
from mds_ros.middleware import PROFILE_VARIABLES, shared_memory_segment_bytes, use_package_profile
from mds_ros.outputs import output_bytes_per_frame
from mds_ros.pairing import StampPairing
from mds_ros.parameters import PerceptionParameters, validate, validate_value
from mds_ros.perception_node import CheckpointWatcher, LatestFrameSlot, PendingFrame, PerceptionNode
from mds_ros.tools.launch_file import share_path

K = np.array([[50.0, 0.0, 32.0], [0.0, 50.0, 16.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    path = write_untrained_checkpoint(tmp_path_factory.mktemp("model") / "m.pt", ModelConfig(
        width=64, height=64, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=2))
    return Predictor.from_checkpoint(path, device="cpu")


def test_frame_stream_resets_on_first_frame_time_backwards_gap_resolution_and_request(predictor):
    stream = FrameStream(predictor, StreamSettings(max_frame_gap=0.5))
    image = np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8)
    wide = np.zeros((32, 96, 3), np.uint8)
    resets = []
    for frame, stamp in ((image, 1.0), (image, 1.1), (image, 0.9), (image, 1.0), (image, 2.0), (wide, 2.1),
                         (wide, 2.2)):
        resets.append(stream.push(frame, K, stamp).reset)
    assert resets == [ResetReason.FIRST_FRAME, None, ResetReason.TIME_BACKWARDS, None, ResetReason.GAP,
                      ResetReason.RESOLUTION, None]
    stream.reset()
    output = stream.push(wide, K, 2.3)
    assert output.reset is ResetReason.REQUESTED and output.prediction.masks is None
    stream.swap_predictor(predictor)  # same input size: the previous frame stays
    output = stream.push(wide, K, 2.4)
    assert output.reset is None and output.prediction.masks is not None and output.gap == pytest.approx(0.1)


@pytest.fixture(scope="module")
def scene_flow_predictor(tmp_path_factory) -> Predictor:
    path = write_untrained_checkpoint(tmp_path_factory.mktemp("flow") / "m.pt", ModelConfig(
        width=64, height=64, depth_encoder="resnet18", pose_mask_encoder="resnet18", motion_model="scene_flow"))
    return Predictor.from_checkpoint(path, device="cpu")


def test_a_scene_flow_stream_answers_each_frame_with_the_one_before_it(scene_flow_predictor):
    """The motion mask of frame t needs frame t+1: a push returns the previous frame's prediction,
    with the tag given with it; the frame before a reset gets no mask, the one after no previous."""
    stream = FrameStream(scene_flow_predictor, StreamSettings(max_frame_gap=0.5))
    frames = np.random.default_rng(1).integers(0, 255, (6, 32, 64, 3), dtype=np.uint8)
    outputs = [stream.push(frame, K, stamp, tag=i)
               for i, (frame, stamp) in enumerate(zip(frames, (1.0, 1.1, 1.2, 1.3, 2.5, 2.6)))]
    assert outputs[0] is None
    assert [o.tag for o in outputs[1:]] == [0, 1, 2, 3, 4]
    assert [o.reset for o in outputs[1:]] == [None, None, None, ResetReason.GAP, None]
    first, middle, before_gap, after_gap = outputs[1], outputs[2], outputs[4], outputs[5]
    assert first.prediction.masks is None and first.prediction.ego_motion is None  # no previous frame
    assert middle.prediction.masks.shape == (2, 64, 64) and middle.prediction.independent_flow.shape == (3, 64, 64)
    assert middle.prediction.labels.dtype == np.uint8 and middle.prediction.ego_motion.shape == (4, 4)
    assert before_gap.prediction.masks is None and before_gap.prediction.ego_motion is not None  # no next frame
    assert after_gap.prediction.masks is None and after_gap.prediction.ego_motion is None  # no previous frame
    # the same triple through the predictor directly gives the same motion mask
    direct = scene_flow_predictor.predict(frames[1], K, frames[0], following=frames[2])
    np.testing.assert_allclose(middle.prediction.moving_probability, direct.moving_probability, atol=1e-6)
    # each output carries the frame it describes as the networks saw it (the overlay is drawn on it)
    for index, output in enumerate(outputs[1:]):
        np.testing.assert_array_equal(output.image, cv2.resize(frames[index], (64, 64), interpolation=cv2.INTER_AREA))


def message(stamp: float, name: str) -> SimpleNamespace:
    sec = int(stamp)
    return SimpleNamespace(name=name, header=SimpleNamespace(stamp=SimpleNamespace(
        sec=sec, nanosec=int(round((stamp - sec) * 1e9)))))


def test_stamp_pairing_matches_exact_stamps_in_either_order_and_forgets_older_messages():
    pairs = []
    pairing = StampPairing(lambda image, info: pairs.append((image.name, info.name)), tolerance=0.0, queue_size=3)
    pairing.add_image(message(1.0, "i1"))
    pairing.add_info(message(1.0, "c1"))  # info after its image
    pairing.add_info(message(2.0, "c2"))
    pairing.add_image(message(2.0, "i2"))  # image after its info
    pairing.add_image(message(3.0, "i3"))
    pairing.add_image(message(4.0, "i4"))
    pairing.add_info(message(4.0, "c4"))  # pairs i4; i3 (older, never paired) is forgotten
    pairing.add_info(message(3.0, "c3"))
    assert pairs == [("i1", "c1"), ("i2", "c2"), ("i4", "c4")]


def test_stamp_pairing_within_tolerance_takes_the_closest():
    pairs = []
    pairing = StampPairing(lambda image, info: pairs.append((image.name, info.name)), tolerance=0.02)
    pairing.add_info(message(0.99, "a"))
    pairing.add_info(message(1.005, "b"))
    pairing.add_image(message(1.0, "i"))
    pairing.add_image(message(2.0, "far"))  # nothing within 20 ms: waits
    assert pairs == [("i", "b")]


def pending(name: str) -> PendingFrame:
    return PendingFrame(image=name, info=None, received=0.0)


def test_latest_frame_slot_keeps_the_newest_and_its_spares():
    slot = LatestFrameSlot()
    assert slot.take(0.01) is None
    assert slot.put(pending("a")) is False
    for name in "bcd":  # "a", "b", "c" become the spares
        assert slot.put(pending(name)) is False
    assert slot.put(pending("e")) is True  # "a" is dropped
    assert [frame.image for frame in slot.take(0.01)] == ["e", "d", "c", "b"]
    assert slot.take(0.01) is None

    arrived = []
    waiter = threading.Thread(target=lambda: arrived.append(slot.take(5.0)))
    waiter.start()
    slot.put(pending("d"))  # wakes the waiting worker
    waiter.join(5.0)
    assert [frame.image for frame in arrived[0]] == ["d"]


def test_the_worker_serves_the_newest_frame_that_decodes_and_drops_the_older_ones():
    """Two frames that passed the cheap checks but fail to decode arrived after a valid one: the
    valid one is served, the one before it is dropped, nothing else is tried."""
    tried, counted = [], NodeStatistics()
    worker = SimpleNamespace(statistics=counted,
                             _process=lambda frame: tried.append(frame.image) or frame.image.startswith("good"))
    PerceptionNode._serve(worker, [pending("bad2"), pending("bad1"), pending("good"), pending("good-older")])
    assert tried == ["bad2", "bad1", "good"]
    assert counted.frames_dropped == 1


def test_checkpoint_watcher_loads_each_new_version_once():
    watcher = CheckpointWatcher("model.pt", (1, 100))
    assert not watcher.should_load((1, 100))  # the loaded version
    assert watcher.should_load((2, 100))
    assert not watcher.should_load((3, 100))  # a load is under way
    watcher.finished((2, 100))
    assert not watcher.should_load((2, 100))  # refused or loaded: not again
    assert watcher.should_load((3, 100))


def test_diagnostics_levels_follow_the_counters():
    statistics = NodeStatistics()
    reporter = DiagnosticsReporter(statistics, "cpu", {"model": "m.pt"}, stall_periods=2)
    status = reporter.status()
    assert (status.level, status.message) == (DiagnosticStatus.OK, "waiting for images")
    statistics.count(frames_received=2, frames_accepted=2, frames_processed=2)
    assert reporter.status().level == DiagnosticStatus.OK
    statistics.count(frames_received=2, frames_accepted=2, frames_processed=1, frames_dropped=1)
    status = reporter.status()
    assert status.level == DiagnosticStatus.WARN and "dropped 1 frames" in status.message
    statistics.count(frames_received=1, frames_accepted=1, frames_processed=1, camera_messages_lost=7)
    status = reporter.status()
    assert status.level == DiagnosticStatus.WARN and "7 camera images lost on the way" in status.message
    statistics.last_problem = "unsupported encoding"
    statistics.count(malformed_messages=3)
    status = reporter.status()
    assert status.level == DiagnosticStatus.WARN and "3 malformed" in status.message
    for _ in range(2):  # frames accepted, none processed, for stall_periods periods
        statistics.count(frames_received=1, frames_accepted=1)
        status = reporter.status()
    assert status.level == DiagnosticStatus.ERROR and "stalled" in status.message
    statistics.count(frames_received=1, frames_accepted=1, frames_processed=1)
    assert reporter.status().level == DiagnosticStatus.OK
    values = {kv.key: kv.value for kv in reporter.status().values}
    assert values["frames_dropped"] == "1" and values["malformed_messages"] == "3" and values["model"] == "m.pt"
    assert values["camera_messages_lost"] == "7"


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("depth_scale", -1.0, ">="), ("depth_scale_mode", "metric", "one of"), ("device", "gpu", "device must be"),
    ("device", "cuda:x", "device must be"), ("width", 100, "multiple of 32"), ("publish_tf", 1, "true or false"),
    ("max_frame_gap", float("nan"), "finite"), ("image_topic", " ", "must not be empty")])
def test_parameter_values_are_refused_with_a_reason(name, value, reason):
    assert reason in validate_value(name, value)


def test_parameter_sets_are_checked_together(tmp_path: Path):
    assert validate_value("device", "cuda:1") is None and validate_value("width", 320) is None
    problems = validate(PerceptionParameters(width=320, height=0, camera_info_source="parameters",
                                             intrinsics=[0.0, 1.0, 2.0, 3.0]))
    text = "; ".join(problems)
    assert "checkpoint is not set" in text and "both width and height" in text and "fx, fy > 0" in text
    assert validate(PerceptionParameters(checkpoint=str(tmp_path / "m.pt"))) == []


# ----------------------------------------------------------------------------- middleware profile
def test_the_package_fastdds_profile_is_used_only_where_fast_dds_is_not_configured(tmp_path):
    environ: dict[str, str] = {}
    chosen = use_package_profile(environ, working_directory=tmp_path)
    assert chosen.path == share_path("config/fastdds.xml")
    assert {environ[v] for v in PROFILE_VARIABLES} == {str(chosen.path)}
    # what it sets: a shared-memory segment that holds a 640x192 frame's outputs (~6 MB), a 100 ms heartbeat
    root = ElementTree.parse(chosen.path).getroot()
    namespace = {"p": root.tag.split("}")[0].strip("{")}
    assert int(root.find(".//p:transport_descriptor[p:type='SHM']/p:segment_size", namespace).text) >= 8 << 20
    period = root.find(".//p:data_writer/p:times/p:heartbeatPeriod", namespace)
    assert (period.find("p:sec", namespace).text, period.find("p:nanosec", namespace).text) == ("0", "100000000")

    # configured already (a profile of the user's, in the environment or the working directory), or not Fast DDS
    for case, (environ, files) in enumerate([({"FASTRTPS_DEFAULT_PROFILES_FILE": "/robot/dds.xml"}, []),
                                             ({"FASTDDS_DEFAULT_PROFILES_FILE": "/robot/dds.xml"}, []),
                                             ({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}, []),
                                             ({}, ["DEFAULT_FASTRTPS_PROFILES.xml"])]):
        directory = tmp_path / f"case{case}"
        directory.mkdir()
        for name in files:
            (directory / name).write_text("<profiles/>")
        before = dict(environ)
        chosen = use_package_profile(environ, working_directory=directory)
        assert environ == before, chosen
        assert chosen.path != share_path("config/fastdds.xml"), chosen


def test_the_shared_memory_segment_a_profile_gives_and_the_outputs_it_must_hold(tmp_path):
    package = share_path("config/fastdds.xml")
    assert shared_memory_segment_bytes({"FASTDDS_DEFAULT_PROFILES_FILE": str(package)}) == 16 << 20
    own = tmp_path / "own.xml"
    own.write_text('<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"><transport_descriptors>'
                   "<transport_descriptor><transport_id>u</transport_id><type>UDPv4</type></transport_descriptor>"
                   "<transport_descriptor><transport_id>s</transport_id><type>SHM</type>"
                   "<segment_size>4194304</segment_size></transport_descriptor></transport_descriptors></profiles>")
    assert shared_memory_segment_bytes({"FASTRTPS_DEFAULT_PROFILES_FILE": str(own)}) == 4 << 20
    # Fast DDS's default: no profile, a profile without a shared-memory transport, an unreadable one
    (tmp_path / "udp.xml").write_text(own.read_text().replace("<type>SHM</type>", "<type>UDPv6</type>"))
    (tmp_path / "broken.xml").write_text("<profiles")
    for environ in ({}, {"FASTDDS_DEFAULT_PROFILES_FILE": str(tmp_path / "udp.xml")},
                    {"FASTDDS_DEFAULT_PROFILES_FILE": str(tmp_path / "broken.xml")},
                    {"FASTDDS_DEFAULT_PROFILES_FILE": str(tmp_path / "missing.xml")}):
        assert shared_memory_segment_bytes(environ) == 512 << 10, environ
    # depth, moving probability, K masks, points, overlay, labels (and the scene flow's 3D flow)
    assert output_bytes_per_frame(1024, 320, 5, scene_flow=False) == 1024 * 320 * 48
    assert output_bytes_per_frame(320, 96, 2, scene_flow=True) == 320 * 96 * (4 + 4 + 8 + 16 + 3 + 1 + 12)



def test_a_report_waits_for_frames_still_in_the_node():
    """``ros-benchmark`` reports once every accepted frame is processed, dropped or failed, and names those
    that are not (a frame may still be in the networks when the last output of the others arrived)."""
    from mds_ros.tools.benchmark import _unsettled
    from mds_ros.tools.session import unsettled_frames

    status = {"frames_received": "10", "frames_accepted": "10", "frames_processed": "8", "frames_dropped": "1"}
    assert unsettled_frames(status) == 1
    assert _unsettled(status) == "; 1 accepted but not yet processed when the report was taken"
    settled = {**status, "failed_frames": "1"}
    assert unsettled_frames(settled) == 0 and _unsettled(settled) == "; failed 1"
    assert unsettled_frames({**status, "frames_processed": "9"}) == 0 and _unsettled({}) == ""
