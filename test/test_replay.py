"""mds_ros.tools.replay: synthetic bags (MCAP and sqlite3) played into live topics and received by a Probe."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from ros_support import Probe, RosProcess, ros_environment, wait_until
from rosbags.highlevel import AnyReader
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from synthetic import truncate_storage

from mds_core.tools.synth import SynthConfig, write_rosbag
from mds_ros.tools.replay import (
    BagError,
    ReplayError,
    ReplayOptions,
    message_class,
    parse_remaps,
    replay_bag,
    split_ros_args,
)

pytestmark = pytest.mark.ros

IMAGE, INFO = "/camera/image_raw", "/camera/camera_info"
NUM_FRAMES = 8
TIMEOUT = 20.0


def stamp_ns(message) -> int:
    return message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec


def clock_ns(message: Clock) -> int:
    return message.clock.sec * 1_000_000_000 + message.clock.nanosec


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def bag(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp(f"bag_{request.param}") / "synth"
    return write_rosbag(path, SynthConfig(width=64, height=32, num_frames=NUM_FRAMES, seed=1), storage=request.param)


def bag_contents(path: Path) -> dict[str, list]:
    """Topic -> deserialised messages (rosbags types), read independently of the player."""
    contents: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for connection, _, raw in reader.messages():
            contents.setdefault(connection.topic, []).append(reader.deserialize(raw, connection.msgtype))
    return contents


def replay_process(bag: Path, env: dict, *args: str) -> RosProcess:
    return RosProcess("mds_ros.tools.replay", [str(bag), "--wait-for-subscribers", "1", "--rate", "5", *args], env=env)


def test_replay_delivers_every_message(bag):
    expected = bag_contents(bag)
    env = ros_environment()
    with Probe(env) as probe:
        probe.subscribe(IMAGE, Image)
        probe.subscribe(INFO, CameraInfo)
        with replay_process(bag, env) as proc:
            assert proc.wait(TIMEOUT) == 0, proc.log()
            images = probe.wait_for_messages(IMAGE, NUM_FRAMES, TIMEOUT)
            infos = probe.wait_for_messages(INFO, NUM_FRAMES, TIMEOUT)
    assert len(images) == len(infos) == NUM_FRAMES
    assert [stamp_ns(m) for m in images] == [stamp_ns(m) for m in expected[IMAGE]]
    assert [stamp_ns(m) for m in infos] == [stamp_ns(m) for m in expected[INFO]]
    stamps = [stamp_ns(m) for m in images]
    assert stamps == sorted(stamps) and len(set(stamps)) == NUM_FRAMES
    for got, want in zip(images, expected[IMAGE]):
        assert (got.encoding, got.width, got.height, got.step) == ("rgb8", 64, 32, 192)
        assert got.header.frame_id == want.header.frame_id
        np.testing.assert_array_equal(np.frombuffer(got.data, np.uint8), want.data)
    np.testing.assert_allclose(infos[0].k, expected[INFO][0].k)
    summary = proc.log().strip().splitlines()[-1]
    assert summary.startswith("mds_replay: played 16 messages") and f"{IMAGE}: 8" in summary


def test_a_truncated_bag_plays_its_intact_messages(tmp_path):
    """The replayer reads bags as training does: a recording cut short plays what is intact, with a warning."""
    for storage in ("mcap", "sqlite3"):
        bag = write_rosbag(tmp_path / storage, SynthConfig(width=64, height=32, num_frames=NUM_FRAMES, seed=1),
                           storage=storage)
        truncate_storage(bag, 0.6)
        env = ros_environment()
        with Probe(env) as probe:
            probe.subscribe(IMAGE, Image)
            with replay_process(bag, env, "--topics", IMAGE) as proc:
                assert proc.wait(TIMEOUT) == 0, proc.log()
            played = int(re.search(rf"{IMAGE}: (\d+)", proc.log()).group(1))
            assert 0 < played < NUM_FRAMES, proc.log()
            probe.wait_for_messages(IMAGE, played, TIMEOUT)
        assert "WARN" in proc.log() and ("truncated" in proc.log() or "unreadable" in proc.log() or
                                          "intact" in proc.log()), proc.log()


def test_clock_follows_bag_time(bag):
    expected = [stamp_ns(m) for m in bag_contents(bag)[IMAGE]]
    env = ros_environment()
    with Probe(env) as probe:
        probe.subscribe(IMAGE, Image)
        probe.subscribe("/clock", Clock)
        with replay_process(bag, env, "--clock", "--topics", IMAGE, "--qos-depth", "4") as proc:
            assert proc.wait(TIMEOUT) == 0, proc.log()
            probe.wait_for_messages(IMAGE, NUM_FRAMES, TIMEOUT)
            # The process has exited, but the probe's executor may not have taken every tick yet.
            wait_until(lambda: [clock_ns(c) for c in probe.messages("/clock")][-1:] == expected[-1:], TIMEOUT,
                       message="the last /clock tick is not the last message's time")
    times = [clock_ns(c) for c in probe.messages("/clock")]
    assert times == sorted(times) and expected[0] <= times[0]
    assert "played 8 messages (/camera/image_raw: 8)" in proc.log()
    # A tick with each message's time, more while waiting; /clock (depth 1, not waited for) may
    # lose the first ticks to discovery.
    assert len(set(expected) & set(times)) >= NUM_FRAMES // 2


def test_sigint_stops_an_endless_loop_gracefully(bag):
    env = ros_environment()
    with Probe(env) as probe:
        probe.subscribe(IMAGE, Image)
        with replay_process(bag, env, "--loop", "0", "--topics", IMAGE) as proc:
            probe.wait_for_messages(IMAGE, NUM_FRAMES + 2, TIMEOUT)  # into the second pass
            assert proc.stop() == 0, proc.log()
    stamps = [stamp_ns(m) for m in probe.messages(IMAGE)]
    assert stamps[NUM_FRAMES] == stamps[0] < stamps[NUM_FRAMES - 1]  # time went back: stamps kept
    assert "(interrupted)" in proc.log()


def test_remaps_ros_args_and_best_effort(bag):
    from rclpy.qos import ReliabilityPolicy

    env = ros_environment()
    with Probe(env) as probe:
        probe.subscribe("/img2", Image, qos="sensor")
        probe.subscribe("/info2", CameraInfo, qos="sensor")
        args = ["--loop", "0", "--qos", "best_effort", "--remap", f"{INFO}:=/info2",
                "--ros-args", "-r", f"{IMAGE}:=/img2", "--log-level", "warn"]
        with replay_process(bag, env, *args) as proc:
            probe.wait_for_messages("/img2", 2, TIMEOUT)
            probe.wait_for_messages("/info2", 2, TIMEOUT)
            # the node name travels in separate discovery data and may arrive after the endpoint
            publishers = wait_until(lambda: [p for p in probe.node.get_publishers_info_by_topic("/img2")
                                             if p.node_name != "_NODE_NAME_UNKNOWN_"], TIMEOUT,
                                    message="the publisher's node name never arrived")
            assert [p.node_name for p in publishers] == ["mds_replay"]
            assert publishers[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
            assert probe.node.count_publishers(IMAGE) == 0
            assert proc.stop() == 0, proc.log()
    assert "/img2: " in proc.log() and "/info2: " in proc.log()


@pytest.mark.parametrize(
    "make_path, fragment",
    [
        (lambda tmp: tmp / "missing_bag", "does not exist"),
        (lambda tmp: (tmp / "junk.mcap").write_bytes(b"\x00garbage" * 8) and tmp / "junk.mcap", "cannot read bag"),
        (lambda tmp: (tmp / "metadata.yaml").write_text("{not: [valid") and tmp, "cannot read bag"),
    ],
)
def test_missing_or_corrupt_bag_exits_2_with_one_line(tmp_path, make_path, fragment):
    path = make_path(tmp_path)
    with RosProcess("mds_ros.tools.replay", [str(path)], env=ros_environment()) as proc:
        assert proc.wait(TIMEOUT) == 2
    lines = proc.log().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mds_replay: error:") and fragment in lines[0], lines


# ----------------------------------------------------------------------------- library API, in-process
def test_library_loop_remap_and_range(bag):
    expected = [stamp_ns(m) for m in bag_contents(bag)[IMAGE]]
    with Probe(ros_environment()) as probe:
        probe.subscribe("/replayed", Image)
        options = ReplayOptions(
            bag=bag, rate=10.0, loop=2, topics=(IMAGE,), remaps={IMAGE: "/replayed"},
            wait_for_subscribers=1, wait_timeout=TIMEOUT, start_offset=0.15, duration=0.3,
        )
        summary = replay_bag(probe.node, options)
        window = [t for t in expected if expected[0] + 150_000_000 <= t < expected[0] + 450_000_000]
        received = probe.wait_for_messages("/replayed", 2 * len(window), TIMEOUT)
        wait_until(lambda: probe.node.count_publishers("/replayed") == 0, 5, message="publisher not destroyed")
    assert len(window) == 3
    assert summary.messages == {"/replayed": 6} and summary.loops == 2 and not summary.interrupted
    assert [stamp_ns(m) for m in received] == window * 2


def test_stop_event_interrupts_before_the_first_message(bag):
    stop = threading.Event()
    stop.set()
    with Probe(ros_environment()) as probe:
        summary = replay_bag(probe.node, ReplayOptions(bag=bag, wait_for_subscribers=1), stop)
    assert summary.interrupted and summary.total == 0


def test_no_subscribers_times_out(bag):
    with Probe(ros_environment()) as probe:
        with pytest.raises(ReplayError, match="timed out after 0.2 s waiting for 1 subscriber"):
            replay_bag(probe.node, ReplayOptions(bag=bag, wait_for_subscribers=1, wait_timeout=0.2))


def test_per_topic_subscriber_counts_are_awaited(bag):
    """The camera topic needs two subscribers (node and recorder); one is not enough to start."""
    with Probe(ros_environment()) as probe:
        probe.subscribe("/camera/image_raw", Image)
        probe.subscribe("/camera/camera_info", CameraInfo)
        with pytest.raises(ReplayError, match=r"waiting for 2 subscriber\(s\) on: /camera/image_raw \(1\)$"):
            replay_bag(probe.node, ReplayOptions(bag=bag, wait_for_subscribers=1, wait_timeout=1.0,
                                                 wait_for_topics={"/camera/image_raw": 2}))


def test_unknown_topic_and_type_errors(bag, tmp_path):
    with Probe(ros_environment()) as probe:
        with pytest.raises(ReplayError, match="topics not in the bag: /nope"):
            replay_bag(probe.node, ReplayOptions(bag=bag, topics=("/nope",)))
        with pytest.raises(BagError, match="does not exist"):
            replay_bag(probe.node, ReplayOptions(bag=tmp_path / "none"))
        with pytest.raises(ValueError, match="rate"):
            replay_bag(probe.node, ReplayOptions(bag=bag, rate=-1))
    with pytest.raises(ReplayError, match="'no_such_msgs/msg/Thing' is not importable"):
        message_class("no_such_msgs/msg/Thing")
    with pytest.raises(ReplayError, match="malformed"):
        message_class("sensor_msgs/msg/Image/extra")
    assert message_class("sensor_msgs/msg/Image") is Image


def test_split_ros_args():
    own, ros = split_ros_args(["bag", "--remap", "/a:=/b", "--ros-args", "-r", "/c:=/d", "--", "--rate", "2",
                               "--ros-args", "--log-level", "warn"])
    assert own == ["bag", "--remap", "/a:=/b", "--rate", "2"]
    assert ros == ["--ros-args", "-r", "/c:=/d", "--ros-args", "--log-level", "warn"]


def test_parse_remaps():
    assert parse_remaps(["/a:=/b", "c:=d"]) == {"/a": "/b", "c": "d"}
    for bad in ["/a", "/a:=", ":=/b"]:
        with pytest.raises(ValueError):
            parse_remaps([bad])


# ----------------------------------------------------------------------------- ros_support helpers
def test_ros_environment_gives_distinct_isolated_domains():
    envs = [ros_environment({"ROS_LOCALHOST_ONLY": "1", "KEEP": "x"}) for _ in range(3)]
    ids = [int(env["ROS_DOMAIN_ID"]) for env in envs]
    assert len(set(ids)) == 3 and all(1 <= i <= 101 for i in ids)
    for env in envs:
        assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" and env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
        assert env["KEEP"] == "x" and "ROS_LOCALHOST_ONLY" not in env and env["PYTHONUNBUFFERED"] == "1"


def test_probe_counts_other_nodes_only():
    from std_msgs.msg import String

    env = ros_environment()
    with Probe(env) as a, Probe(env) as b:
        a.subscribe("/chat", String)
        wait_until(lambda: a.node.count_subscribers("/chat") == 1, 5)
        assert a.subscriber_count("/chat") == 0  # its own subscription does not count
        publisher = b.publisher("/chat", String)
        a.wait_for_publishers("/chat", 1, timeout=TIMEOUT)
        b.wait_for_subscribers("/chat", 1, timeout=TIMEOUT)
        wait_until(publisher.get_subscription_count, TIMEOUT)
        publisher.publish(String(data="hello"))
        assert [m.data for m in a.wait_for_messages("/chat", 1, TIMEOUT)] == ["hello"]


def test_ros_process_output_and_stop():
    import sys

    with RosProcess([sys.executable, "-c", "print('ready', flush=True); import time; time.sleep(60)"]) as proc:
        proc.wait_for_log("ready", TIMEOUT)
        assert proc.running and proc.returncode is None
        assert proc.stop() != 0  # SIGINT: KeyboardInterrupt
    assert not proc.running and proc.log().startswith("ready")
    with pytest.raises(AssertionError, match="never true"):
        wait_until(lambda: False, 0.1, message="never true")
