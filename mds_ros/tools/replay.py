"""Play a rosbag2 (MCAP or sqlite3) into live ROS 2 topics, where ``ros2 bag play`` is missing.

Usage::

    mds_replay BAG [--rate R] [--clock] [--loop N] [--topics T ...] [--remap OLD:=NEW ...]
               [--qos reliable|best_effort] [--wait-for-subscribers N] [--wait-for TOPIC=N ...] [--wait-timeout S]
               [--on-timeout fail|play]
               [--start-offset S] [--duration S] [--ros-args ...]

``BAG`` is a bag directory (with ``metadata.yaml``) or a single ``.mcap`` / ``.db3`` file; it is
read with ``rosbags`` and every message is deserialised into the matching rclpy message class
(which checks the data) and published.

Timing follows the bag's receive (log) timestamps divided by ``--rate``; ``--rate 0`` publishes
as fast as possible (with ``KEEP_LAST`` history, a subscriber slower than the player may then
miss messages). Header stamps are never changed: with ``--loop`` the stamps jump back at each
loop start and consumers must handle time going backwards. ``--clock`` publishes
``rosgraph_msgs/Clock`` on ``/clock`` (reliable, which best-effort ``/clock`` subscriptions of
rclpy/rclcpp also match) with the bag time before each message and at ``--clock-hz`` while
waiting between messages.

At the end, with reliable QoS, the player waits (``ack_timeout``, 5 s) until every subscriber has
acknowledged every message, so that nothing is lost when the process exits. Fast DDS sends the
heartbeat that triggers acknowledgements with each message only once a publisher's history is
full; a topic with fewer messages than ``--qos-depth`` is acknowledged at the next periodic
heartbeat (up to 3 s).

Exit status: 0 after playing (also when stopped with Ctrl-C), 1 when playing fails (for example
no subscribers before ``--wait-timeout`` with ``--on-timeout fail``, the default), 2 for a missing or
unreadable bag or invalid options. With ``--on-timeout play`` it warns and plays after the timeout.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mds_core.data.rosbag.reader import BagReader, TopicEntry
from mds_ros.middleware import use_package_profile

__all__ = [
    "BagError",
    "ReplayError",
    "ReplayOptions",
    "ReplaySummary",
    "main",
    "message_class",
    "open_bag",
    "parse_remaps",
    "replay_bag",
    "split_ros_args",
]

NS_PER_S = 1_000_000_000


class ReplayError(RuntimeError):
    """Playing the bag failed (unknown message type, no subscribers in time, ...)."""


class BagError(ReplayError):
    """The bag path is missing or the bag cannot be read."""


@dataclass
class ReplayOptions:
    """What :func:`replay_bag` plays, and how.

    Attributes:
        bag: bag directory or single ``.mcap`` / ``.db3`` file.
        rate: playback speed factor (2.0 = twice as fast); 0 = as fast as possible.
        clock: publish ``rosgraph_msgs/Clock`` on ``/clock`` with the bag time.
        clock_hz: how often ``/clock`` is published while waiting between messages (0: only
            before each message).
        loop: how many times the bag is played; 0 = until stopped.
        topics: topics to play (bag names, before remapping); empty = all.
        remaps: bag topic -> published topic.
        qos: ``"reliable"`` or ``"best_effort"`` for every data publisher.
        qos_depth: ``KEEP_LAST`` history depth of the data publishers.
        wait_for_subscribers: before playing, wait until every data topic has at least this
            many subscribers (``/clock`` not counted).
        wait_for_topics: published topic -> subscribers to wait for on that topic instead (e.g.
            the node under test plus a recorder on the camera topic, only the recorder elsewhere).
        wait_timeout: seconds to wait for them.
        on_timeout: ``"fail"`` (raise :class:`ReplayError`) or ``"play"`` (warn and play anyway)
            when the subscribers are not there after ``wait_timeout``.
        start_offset: seconds of bag time skipped at the start.
        duration: seconds of bag time played from the start offset (None: to the end).
        ack_timeout: seconds to wait at the end for reliable subscribers to acknowledge.
    """

    bag: Path
    rate: float = 1.0
    clock: bool = False
    clock_hz: float = 40.0
    loop: int = 1
    topics: tuple[str, ...] = ()
    remaps: dict[str, str] = field(default_factory=dict)
    qos: str = "reliable"
    qos_depth: int = 10
    wait_for_subscribers: int = 0
    wait_for_topics: dict[str, int] = field(default_factory=dict)
    wait_timeout: float = 10.0
    on_timeout: str = "fail"
    start_offset: float = 0.0
    duration: float | None = None
    ack_timeout: float = 5.0

    def validate(self) -> None:
        """Raise ``ValueError`` for options that cannot be honoured."""
        checks = [
            (self.rate >= 0, f"rate must be >= 0, got {self.rate}"),
            (self.clock_hz >= 0, f"clock_hz must be >= 0, got {self.clock_hz}"),
            (self.loop >= 0, f"loop must be >= 0 (0 = forever), got {self.loop}"),
            (self.qos in ("reliable", "best_effort"), f"qos must be 'reliable' or 'best_effort', got {self.qos!r}"),
            (self.qos_depth >= 1, f"qos_depth must be >= 1, got {self.qos_depth}"),
            (self.wait_for_subscribers >= 0, "wait_for_subscribers must be >= 0"),
            (all(n >= 0 for n in self.wait_for_topics.values()), "wait_for_topics counts must be >= 0"),
            (self.wait_timeout >= 0, "wait_timeout must be >= 0"),
            (self.on_timeout in ("fail", "play"), f"on_timeout must be 'fail' or 'play', got {self.on_timeout!r}"),
            (self.start_offset >= 0, "start_offset must be >= 0"),
            (self.duration is None or self.duration >= 0, "duration must be >= 0"),
            (self.ack_timeout >= 0, "ack_timeout must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class ReplaySummary:
    """What :func:`replay_bag` did."""

    messages: dict[str, int]  # published topic -> messages published
    wall_duration: float  # seconds from the first message to the end (waiting excluded)
    loops: int  # complete passes over the bag
    interrupted: bool = False

    @property
    def total(self) -> int:
        """Messages published on all topics."""
        return sum(self.messages.values())

    def line(self) -> str:
        """A one-line human-readable summary."""
        per_topic = ", ".join(f"{topic}: {count}" for topic, count in self.messages.items())
        state = " (interrupted)" if self.interrupted else ""
        return (
            f"played {self.total} messages ({per_topic}) in {self.wall_duration:.2f} s, "
            f"{self.loops} loop(s){state}"
        )


# ----------------------------------------------------------------------------- bag access
def open_bag(path: Path | str) -> BagReader:
    """The bag at ``path``, opened with the reader that training uses (a damaged bag plays what is
    intact; :attr:`BagReader.notes` says what was lost).

    Raises:
        BagError: the path does not exist, is a ROS 1 bag, or cannot be read as a rosbag2.
    """
    from mds_core.data.sequence_folder import DataError

    path = Path(path)
    if path.suffix == ".bag":
        raise BagError(f"{path} is a ROS 1 bag; only rosbag2 (MCAP, sqlite3) bags can be played")
    try:
        return BagReader(path)
    except DataError as error:
        raise BagError(f"cannot read bag {path}: {error}") from error


def message_class(msgtype: str) -> type:
    """The rclpy message class of a type name such as ``sensor_msgs/msg/Image``.

    Raises:
        ReplayError: malformed name or the Python package is not importable.
    """
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ReplayError(f"malformed message type name {msgtype!r} (expected 'package/msg/Name')")
    package, kind, name = parts
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError) as error:
        raise ReplayError(
            f"message type {msgtype!r} is not importable ({error}); install its ROS package "
            f"('{package}') or leave its topic out with --topics"
        ) from None


def parse_remaps(items: Sequence[str]) -> dict[str, str]:
    """``["OLD:=NEW", ...]`` -> ``{OLD: NEW}``; raises ``ValueError`` for malformed items."""
    remaps: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition(":=")
        if not sep or not old or not new:
            raise ValueError(f"remap must look like OLD:=NEW, got {item!r}")
        remaps[old] = new
    return remaps


def _select_topics(reader: BagReader, topics: Sequence[str]) -> list[TopicEntry]:
    entries = list(reader.topics.values())
    if not topics:
        return entries
    missing = [t for t in topics if t not in reader.topics]
    if missing:
        raise ReplayError(f"topics not in the bag: {', '.join(missing)} (bag has: {', '.join(sorted(reader.topics))})")
    return [e for e in entries if e.name in set(topics)]


# ----------------------------------------------------------------------------- publishing
def _qos(options: ReplayOptions) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliability = ReliabilityPolicy.RELIABLE if options.qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=options.qos_depth,
        reliability=reliability,
        durability=DurabilityPolicy.VOLATILE,
    )


@dataclass
class _Output:
    topic: str
    cls: type
    publisher: Any


def _create_outputs(node: Any, entries: Sequence[TopicEntry], options: ReplayOptions) -> dict[str, _Output]:
    """One publisher per output topic; returns bag topic -> output."""
    errors, classes = [], {}
    for entry in entries:
        try:
            classes[entry.name] = message_class(entry.msgtype)
        except ReplayError as error:
            errors.append(f"{entry.name}: {error}")
    if errors:
        raise ReplayError("; ".join(errors))
    qos, by_topic, outputs = _qos(options), {}, {}
    for entry in entries:
        topic = options.remaps.get(entry.name, entry.name)
        cls = classes[entry.name]
        output = by_topic.get(topic)
        if output is None:
            publisher = node.create_publisher(cls, topic, qos)
            # The resolved name, after --remap and any --ros-args remapping rules.
            output = by_topic[topic] = _Output(publisher.topic_name, cls, publisher)
        elif output.cls is not cls:
            raise ReplayError(f"topic {topic} carries two message types: {output.cls.__name__} and {cls.__name__}")
        outputs[entry.name] = output
    return outputs


def _wait_for_subscribers(outputs: Sequence[_Output], required: dict[str, int], timeout: float,
                          stop: threading.Event) -> None:
    """Poll until each publisher has ``required[topic]`` subscribers; ``ReplayError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        lacking = [o for o in outputs if o.publisher.get_subscription_count() < required[o.topic]]
        if not lacking or stop.is_set():
            return
        if time.monotonic() >= deadline:
            needed = {required[o.topic] for o in lacking}
            if len(needed) == 1:
                detail = ", ".join(f"{o.topic} ({o.publisher.get_subscription_count()})" for o in lacking)
                raise ReplayError(f"timed out after {timeout:g} s waiting for {needed.pop()} subscriber(s) on: "
                                  f"{detail}")
            detail = ", ".join(f"{o.topic} ({o.publisher.get_subscription_count()} of {required[o.topic]})"
                               for o in lacking)
            raise ReplayError(f"timed out after {timeout:g} s waiting for subscribers on: {detail}")
        stop.wait(0.02)


class _Pacer:
    """Waits until each message's scheduled wall time and keeps ``/clock`` going meanwhile."""

    def __init__(self, rate: float, clock: Any, clock_hz: float, stop: threading.Event):
        self.rate, self.clock, self.stop = rate, clock, stop
        self.clock_period = 1.0 / clock_hz if clock_hz > 0 else None
        self.wall_start = time.monotonic()
        self.bag_start = 0

    def restart(self, bag_start_ns: int) -> None:
        """Start a pass over the bag: ``bag_start_ns`` is played now."""
        self.wall_start, self.bag_start = time.monotonic(), bag_start_ns

    def wait_for(self, bag_ns: int) -> bool:
        """Sleep until ``bag_ns`` is due; False when stopped meanwhile."""
        if self.rate > 0:
            due = self.wall_start + (bag_ns - self.bag_start) / NS_PER_S / self.rate
            while (remaining := due - time.monotonic()) > 0:
                step = remaining if self.clock_period is None else min(remaining, self.clock_period)
                if self.stop.wait(step):
                    return False
                if self.clock is not None and self.clock_period is not None:
                    elapsed = (time.monotonic() - self.wall_start) * self.rate
                    self.publish_clock(min(bag_ns, self.bag_start + int(elapsed * NS_PER_S)))
        if self.stop.is_set():
            return False
        if self.clock is not None:
            self.publish_clock(bag_ns)
        return True

    def publish_clock(self, bag_ns: int) -> None:
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        self.clock.publish(Clock(clock=Time(sec=bag_ns // NS_PER_S, nanosec=bag_ns % NS_PER_S)))


def _loops(count: int) -> Iterator[int]:
    index = 0
    while count == 0 or index < count:
        yield index
        index += 1


def _deserialize(raw: bytes, output: _Output, index: int) -> Any:
    from rclpy.serialization import deserialize_message

    try:
        return deserialize_message(raw, output.cls)
    except Exception as error:
        raise ReplayError(
            f"bag message {index} (topic {output.topic}) is not a valid {output.cls.__name__}: {error}"
        ) from error


def _wait_for_acks(publishers: Sequence[Any], timeout: float) -> None:
    """Give reliable subscribers up to ``timeout`` s in all to acknowledge everything published."""
    from rclpy.duration import Duration

    deadline = time.monotonic() + timeout
    for publisher in publishers:
        left = max(0.0, deadline - time.monotonic())
        publisher.wait_for_all_acked(Duration(nanoseconds=int(left * NS_PER_S)))


def replay_bag(node: Any, options: ReplayOptions, stop_event: threading.Event | None = None) -> ReplaySummary:
    """Publish the bag's messages on ``node`` (see the module docstring for the timing rules).

    Publishers are created on ``node`` and destroyed before returning. ``stop_event`` (set from
    another thread or a signal handler) stops playback early; the summary then says
    ``interrupted``.

    Raises:
        BagError: missing or unreadable bag.
        ReplayError: unknown types, topics not in the bag, no subscribers in time, corrupt data.
        ValueError: invalid options.
    """
    options.validate()
    stop = stop_event if stop_event is not None else threading.Event()
    reader = open_bag(options.bag)
    for note in reader.notes:
        node.get_logger().warning(f"bag {options.bag}: {note}")
    created: list[Any] = []
    try:
        entries = _select_topics(reader, options.topics)
        outputs = _create_outputs(node, entries, options)
        unique = list({id(o): o for o in outputs.values()}.values())
        created.extend(o.publisher for o in unique)
        clock = None
        if options.clock:
            from rclpy.qos import QoSProfile, ReliabilityPolicy
            from rosgraph_msgs.msg import Clock

            clock = node.create_publisher(Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
            created.append(clock)
        required = {o.topic: options.wait_for_topics.get(o.topic, options.wait_for_subscribers) for o in unique}
        if any(required.values()):
            try:
                _wait_for_subscribers(unique, required, options.wait_timeout, stop)
            except ReplayError as error:
                if options.on_timeout == "fail":
                    raise
                node.get_logger().warning(f"{error}; playing anyway")
        counts = {o.topic: 0 for o in unique}
        summary = _play(reader, [e.name for e in entries], outputs, options, clock, stop, counts)
        reliable = [o.publisher for o in unique] if options.qos == "reliable" else []
        timeout = min(options.ack_timeout, 1.0) if summary.interrupted else options.ack_timeout
        _wait_for_acks(reliable + ([clock] if clock is not None else []), timeout)
        return summary
    except (ReplayError, ValueError):
        raise
    except Exception as error:  # reading a damaged bag part-way through
        if type(error).__module__.startswith("rosbags"):
            raise BagError(f"cannot read bag {options.bag}: {error}") from error
        raise
    finally:
        for entity in created:
            node.destroy_publisher(entity)


def _play(
    reader: BagReader,
    topics: Sequence[str],
    outputs: dict[str, _Output],
    options: ReplayOptions,
    clock: Any,
    stop: threading.Event,
    counts: dict[str, int],
) -> ReplaySummary:
    """Every pass plays the log-time window ``[first + start_offset, ... + duration)`` of the bag."""
    pacer = _Pacer(options.rate, clock, options.clock_hz, stop)
    wall_start, loops = time.monotonic(), 0
    for _ in _loops(options.loop):
        first = None
        for index, message in enumerate(reader.messages(topics)):
            if first is None:
                first = (reader.start_time if reader.start_time is not None else message.log_time) \
                    + int(options.start_offset * NS_PER_S)
                end = None if options.duration is None else first + int(options.duration * NS_PER_S)
                pacer.restart(first)
            if message.log_time < first:
                continue
            if end is not None and message.log_time >= end:
                break
            output = outputs[message.topic]
            decoded = _deserialize(bytes(message.data), output, index)
            if not pacer.wait_for(message.log_time):
                return ReplaySummary(counts, time.monotonic() - wall_start, loops, interrupted=True)
            output.publisher.publish(decoded)
            counts[output.topic] += 1
        if first is None and options.loop == 0:
            break  # nothing to play: do not spin forever
        loops += 1
        if stop.is_set():
            return ReplaySummary(counts, time.monotonic() - wall_start, loops, interrupted=True)
    return ReplaySummary(counts, time.monotonic() - wall_start, loops)


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """The ``mds_replay`` argument parser (ROS arguments removed beforehand)."""
    parser = argparse.ArgumentParser(
        prog="mds_replay",
        description="Play a rosbag2 (MCAP or sqlite3) into live ROS 2 topics.",
    )
    parser.add_argument("bag", type=Path, help="bag directory or .mcap / .db3 file")
    parser.add_argument("--rate", type=float, default=1.0, help="speed factor; 0 = as fast as possible")
    parser.add_argument("--clock", nargs="?", const="true", default="false", type=_boolean, metavar="BOOL",
                        help="publish rosgraph_msgs/Clock on /clock (--clock, or --clock true|false)")
    parser.add_argument("--clock-hz", type=float, default=40.0, help="/clock rate while waiting (0: per message)")
    parser.add_argument("--loop", type=int, default=1, help="number of passes over the bag; 0 = forever")
    parser.add_argument("--topics", nargs="+", default=[], metavar="TOPIC", help="topics to play (default all)")
    parser.add_argument("--remap", nargs="+", action="extend", default=[], metavar="OLD:=NEW",
                        help="publish bag topic OLD as NEW")
    parser.add_argument("--qos", choices=("reliable", "best_effort"), default="reliable")
    parser.add_argument("--qos-depth", type=int, default=10)
    parser.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                        help="wait until every topic has N subscribers before playing")
    parser.add_argument("--wait-for", action="append", default=[], metavar="TOPIC=N",
                        help="wait for N subscribers on TOPIC instead (repeatable)")
    parser.add_argument("--wait-timeout", type=float, default=10.0, metavar="S")
    parser.add_argument("--on-timeout", choices=("fail", "play"), default="fail",
                        help="when the subscribers are not there after --wait-timeout: fail (exit 1) or warn and play")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="S", help="skip S seconds of bag time")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="play S seconds of bag time")
    return parser


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


def parse_wait_for(items: Sequence[str]) -> dict[str, int]:
    """``["/camera/image_raw=2"]`` -> ``{"/camera/image_raw": 2}`` (raises ``ValueError``)."""
    result = {}
    for item in items:
        topic, _, count = item.rpartition("=")
        if not topic or not count.isdigit():
            raise ValueError(f"--wait-for takes TOPIC=N, got {item!r}")
        result[topic] = int(count)
    return result


def options_from_args(args: argparse.Namespace) -> ReplayOptions:
    """:class:`ReplayOptions` from parsed arguments (raises ``ValueError`` for invalid ones)."""
    options = ReplayOptions(
        bag=args.bag,
        rate=args.rate,
        clock=args.clock,
        clock_hz=args.clock_hz,
        loop=args.loop,
        topics=tuple(args.topics),
        remaps=parse_remaps(args.remap),
        qos=args.qos,
        qos_depth=args.qos_depth,
        wait_for_subscribers=args.wait_for_subscribers,
        wait_for_topics=parse_wait_for(args.wait_for),
        wait_timeout=args.wait_timeout,
        on_timeout=args.on_timeout,
        start_offset=args.start_offset,
        duration=args.duration,
    )
    options.validate()
    return options


def split_ros_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` into the player's own arguments and the ROS ones.

    ROS arguments are the ``--ros-args ... [--]`` sections (markers kept in the second list, a
    closing ``--`` dropped). ``rclpy.utilities.remove_ros_args`` is not used for this because it
    also drops every ``OLD:=NEW`` token outside those sections (ROS 1 style remap rules), which
    would swallow the values of ``--remap``; for the same reason only the ROS sections are given
    to ``rclpy.init``.
    """
    own: list[str] = []
    ros: list[str] = []
    inside = False
    for token in argv:
        if token == "--ros-args":
            inside = True
            ros.append(token)
        elif inside and token == "--":
            inside = False
        elif inside:
            ros.append(token)
        else:
            own.append(token)
    return own, ros


def _error(message: str, status: int) -> int:
    """Print ``message`` as one line on stderr and return ``status``."""
    print(f"mds_replay: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def _install_stop_handlers(stop: threading.Event) -> None:
    """SIGINT / SIGTERM stop playback gracefully; a second SIGINT interrupts at once."""

    def handler(signum: int, _frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """``mds_replay`` entry point; returns the exit status (see the module docstring)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    own_args, ros_args = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own_args)
    try:
        options = options_from_args(args)
        open_bag(options.bag)  # fail fast, before starting ROS
    except (ValueError, BagError) as error:
        return _error(str(error), 2)

    stop = threading.Event()
    _install_stop_handlers(stop)
    use_package_profile()  # camera images larger than Fast DDS's default shared memory would arrive late
    context = rclpy.Context()
    rclpy.init(args=["mds_replay", *ros_args], context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("mds_replay", context=context)
    try:
        summary = replay_bag(node, options, stop)
    except BagError as error:
        return _error(str(error), 2)
    except ReplayError as error:
        return _error(str(error), 1)
    finally:
        node.destroy_node()
        context.try_shutdown()
    print(f"mds_replay: {summary.line()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
