"""A perception node in its own process, a bag replayed into it, and its outputs recorded here.

Used by ``mds ros-demo`` and ``mds ros-benchmark``: the node and ``mds_replay`` run as separate
processes started from the launch file's nodes (:mod:`mds_ros.tools.launch_file`); this process holds
a recorder node. Discovery is awaited by polling with a timeout, never by a fixed sleep.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor

from mds_ros.tools.launch_file import NodeSpec
from mds_ros.tools.recorder import TopicRecorder
from mds_ros.tools.runner import ProcessGroup

NODE = "/mds_perception"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class NodeSession:
    """``with NodeSession(specs, topics, log_dir) as session: session.replay(bag, ...)``."""

    def __init__(self, perception: list[NodeSpec], topics: dict[str, type], log_dir: Path,
                 input_topics: tuple[str, ...] = ("/camera/image_raw", "/camera/camera_info"),
                 startup_timeout: float = 120.0):
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # talk to this machine only
        self.env = dict(os.environ)
        self.log_dir = log_dir
        self.input_topics = input_topics
        self.startup_timeout = startup_timeout
        self.perception = ProcessGroup(perception, env=self.env, log_dir=log_dir)
        self._camera_nodes = sum(spec.executable in ("mds_node", "mds_trainer")
                                 for spec in perception)
        self._topics = topics
        self.context = Context()

    def __enter__(self) -> NodeSession:
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("mds_session_recorder", context=self.context)
        self.recorder = TopicRecorder(self.node, self._topics)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()
        try:
            self.perception.start()
            wait_until(lambda: not self.node_alive() or (self._node_publishing() and self._node_subscribed()),
                       self.startup_timeout, "the perception node to start")
            if not self.node_alive():
                raise RuntimeError(f"the perception node exited; see {self.log_dir / 'mds_perception.log'}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _input_subscribers(self) -> dict[str, int]:
        """Subscribers each camera topic must have before the replay starts: the started nodes' and
        this process's own, when it records that topic too (it would otherwise satisfy the replay's
        wait alone and frames would be lost to the nodes' discovery)."""
        return {topic: self._camera_nodes + (topic in self._topics) for topic in self.input_topics}

    def _node_publishing(self) -> bool:
        """Every recorded output of the node is discovered on both sides: here, and by the node, which says
        so in ``/diagnostics`` (it builds and sends only outputs with a matched subscriber, so a topic it
        matched late would miss its first frames)."""
        outputs = [topic for topic in self._topics if topic.startswith(f"{NODE}/")]
        if not all(self.recorder.matched(topic) for topic in outputs):
            return False
        subscribed = self.recorder.latest_status(NODE.lstrip("/")).get("subscribed_outputs", "0")
        return int(subscribed) >= len(outputs)

    def _node_subscribed(self) -> bool:
        return all(self.node.count_subscribers(t) >= n for t, n in self._input_subscribers().items())

    def node_alive(self) -> bool:
        return self.perception.ended_launch() is None

    @property
    def node_pid(self) -> int:
        return self.perception.processes["mds_perception"].pid

    def replay(self, bag: Path, frames: int, duration: float, rate: float = 1.0,
               on_poll: Callable[[], None] | None = None) -> float:
        """Play ``bag`` (``frames`` images over ``duration`` s of bag time) and wait until the node's
        outputs have stopped arriving; returns the wall time from replay start to the last output."""
        started = time.monotonic()
        arguments = [str(bag), "--rate", str(rate)]
        for topic, count in self._input_subscribers().items():
            arguments += ["--wait-for", f"{topic}={count}"]
        specs = [NodeSpec(executable="mds_replay", name="mds_replay", arguments=arguments)]
        replay = ProcessGroup(specs, env=self.env, log_dir=self.log_dir)
        depth_topic = f"{NODE}/depth/image"
        last = [-1, time.monotonic()]

        def poll(done: Callable[[], bool]) -> Callable[[], bool]:
            def check() -> bool:
                if on_poll is not None:
                    on_poll()
                return done()
            return check

        def quiet() -> bool:
            count = self.recorder.count(depth_topic)
            if count != last[0]:
                last[:] = [count, time.monotonic()]
            return count >= frames or time.monotonic() - last[1] > 3.0

        with replay:
            process = replay.processes["mds_replay"]
            wait_until(poll(lambda: process.poll() is not None), 60 + 3 * duration / max(rate, 1e-3),
                       "the replay to finish", interval=0.25)
            if process.returncode != 0:
                raise RuntimeError(f"mds_replay failed; see {self.log_dir / 'mds_replay.log'}")
        wait_until(poll(quiet), 120, "the node's last outputs", interval=0.25)
        wall = last[1] - started
        wait_until(self._diagnostics_caught_up, 10, "diagnostics counting every frame the node published")
        # and every frame it accepted as processed, dropped or failed (one may still be in its networks);
        # a frame that never settles shows in the report as received but neither
        deadline = time.monotonic() + 5.0
        while not self._every_frame_settled() and time.monotonic() < deadline:
            time.sleep(0.1)
        return wall

    def _diagnostics_caught_up(self) -> bool:
        """The node's latest ``/diagnostics`` counts every frame whose depth was recorded (it is sent once a
        period, so the one before the last frame would under-report)."""
        processed = self.recorder.latest_status(NODE.lstrip("/")).get("frames_processed")
        return processed is not None and int(processed) >= self.recorder.count(f"{NODE}/depth/image")

    def _every_frame_settled(self) -> bool:
        return unsettled_frames(self.recorder.latest_status(NODE.lstrip("/"))) == 0

    def __exit__(self, *exc) -> None:
        self.perception.stop()
        self.executor.shutdown()
        self._spin.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def unsettled_frames(status: dict[str, str]) -> int:
    """Frames the node accepted but had not processed, dropped or failed when it sent ``status`` (its
    ``/diagnostics`` values); malformed messages count as settled (the counter mixes those refused on
    arrival with those found malformed later)."""
    count = {key: int(status.get(key, 0)) for key in ("frames_accepted", "frames_processed", "frames_dropped",
                                                       "failed_frames", "malformed_messages")}
    return max(0, count.pop("frames_accepted") - sum(count.values()))


def output_delivery(recorder: TopicRecorder) -> str:
    """How completely and how closely together each frame's outputs reached the recorder (a subscriber on the
    same machine): a message that the middleware loses and repairs late shows as a wide spread."""
    topics = [t for t in recorder.types if t.startswith(f"{NODE}/") and not t.endswith("/path")
              and recorder.count(t) > 0]
    arrivals = recorder.arrivals_by_stamp(topics)
    frames = [arrivals[stamp] for stamp in sorted(arrivals)[1:]]  # the first frame has no motion outputs
    if not frames:
        return "outputs delivered: none recorded"
    spreads = sorted((max(times) - min(times)) * 1e-6 for times in frames)
    complete = sum(len(times) == len(topics) for times in frames)
    return (f"outputs delivered: {complete} of {len(frames)} frames after the first with all {len(topics)} outputs "
            f"recorded; a frame's outputs arrived within {spreads[len(spreads) // 2]:.1f} ms of each other "
            f"(median), {spreads[-1]:.1f} ms (max)")
