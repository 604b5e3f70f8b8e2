"""Record topics as serialized messages (``ros2 bag record`` is not available here).

Subscriptions take the raw CDR bytes, so recording costs no deserialisation; messages are
deserialised on demand and can be written to a rosbag2 (MCAP) with ``rosbags``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message


def type_name(message_type: type) -> str:
    """``sensor_msgs.msg.Image`` -> ``sensor_msgs/msg/Image``."""
    package = message_type.__module__.split(".")[0]
    return f"{package}/msg/{message_type.__name__}"


@dataclass
class RecordedMessage:
    topic: str
    received_ns: int
    data: bytes


class TopicRecorder:
    """Keeps every message of ``topics`` (name -> message class) received by ``node``."""

    def __init__(self, node: Node, topics: dict[str, type], reliable: bool = True, depth: int = 100):
        self.node = node
        self.types = dict(topics)
        self._messages: dict[str, list[RecordedMessage]] = {topic: [] for topic in topics}
        self._lock = threading.Lock()
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self.subscriptions = [node.create_subscription(message_type, topic, self._callback(topic), qos, raw=True)
                              for topic, message_type in topics.items()]

    def _callback(self, topic: str):
        def record(data: bytes) -> None:
            stamp = self.node.get_clock().now().nanoseconds
            with self._lock:
                self._messages[topic].append(RecordedMessage(topic, stamp, bytes(data)))
        return record

    def matched(self, topic: str) -> bool:
        """Whether the subscription of ``topic`` is matched with a publisher (discovery done on this side)."""
        return any(sub.topic_name == topic and sub.get_publisher_count() > 0 for sub in self.subscriptions)

    def count(self, topic: str) -> int:
        with self._lock:
            return len(self._messages[topic])

    def arrival_rate(self, topic: str) -> float:
        """Messages per second of ``topic`` between its first and its last arrival (0 with fewer than 2)."""
        with self._lock:
            stamps = [m.received_ns for m in self._messages[topic]]
        if len(stamps) < 2 or stamps[-1] <= stamps[0]:
            return 0.0
        return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) * 1e-9)

    def messages(self, topic: str) -> list[Any]:
        """Deserialised messages of ``topic`` in arrival order."""
        with self._lock:
            raw = list(self._messages[topic])
        return [deserialize_message(m.data, self.types[topic]) for m in raw]

    def arrivals_by_stamp(self, topics: list[str]) -> dict[int, list[int]]:
        """Arrival times (ns) of the messages of ``topics`` grouped by their header stamp (ns, a
        ``MarkerArray`` by its first marker's): when each part of one frame's outputs arrived."""
        frames: dict[int, list[int]] = {}
        for topic in topics:
            with self._lock:
                raw = list(self._messages[topic])
            for recorded in raw:
                message = deserialize_message(recorded.data, self.types[topic])
                header = message.markers[0].header if hasattr(message, "markers") else message.header
                stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
                frames.setdefault(stamp, []).append(recorded.received_ns)
        return frames

    def latest_status(self, prefix: str) -> dict[str, str]:
        """The key/values of the newest recorded ``/diagnostics`` status whose name starts with ``prefix``."""
        for message in reversed(self.messages("/diagnostics")):
            for status in message.status:
                if status.name.startswith(prefix):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def write_bag(self, path: Path) -> Path:
        """All recorded messages as a rosbag2 MCAP directory at ``path`` (must not exist)."""
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        typestore = get_typestore(Stores.ROS2_JAZZY)
        with self._lock:
            recorded = {topic: list(messages) for topic, messages in self._messages.items()}
        writer = Writer(Path(path), version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
        with writer:
            connections = {topic: writer.add_connection(topic, type_name(self.types[topic]), typestore=typestore)
                           for topic in recorded if recorded[topic]}
            ordered = sorted((m for messages in recorded.values() for m in messages), key=lambda m: m.received_ns)
            for message in ordered:
                writer.write(connections[message.topic], message.received_ns, message.data)
        return Path(path)
