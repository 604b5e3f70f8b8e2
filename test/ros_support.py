"""Helpers for tests that talk ROS 2 across processes (real rclpy, Fast DDS on loopback).

Typical use::

    env = ros_environment()
    with RosProcess("mds_ros.tools.replay", [str(bag), "--wait-for-subscribers", "1"], env=env) as proc, \\
            Probe(env) as probe:
        probe.subscribe("/camera/image_raw", Image)
        probe.wait_for_messages("/camera/image_raw", 8, timeout=20)

Isolation: every :func:`ros_environment` call gets its own ``ROS_DOMAIN_ID`` (1..101) and
discovery limited to localhost, so parallel test processes and earlier tests' stragglers do
not see each other. Domain ids are claimed with ``flock`` on files in the temp directory, so
concurrent test processes never pick the same id; locks go away with the process.

Discovery sometimes takes seconds: always wait for matching (``wait_for_publishers``,
``wait_for_subscribers``, ``--wait-for-subscribers``), never sleep a fixed time.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
DOMAIN_IDS = range(1, 102)  # Fast DDS port arithmetic is safe for 0..101 on Linux; 0 is left to real robots
MAX_DOMAINS_PER_PROCESS = 16

T = TypeVar("T")

# ----------------------------------------------------------------------------- environment
_domain_lock = threading.Lock()
_held_domains: dict[int, int] = {}  # domain id -> fd of its lock file, for this process
_domain_calls = 0
_probe_ids = itertools.count()


def _lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"mds_ros_test_domains_{os.getuid()}"
    path.mkdir(exist_ok=True)
    return path


def _try_claim(domain_id: int) -> bool:
    """Take the machine-wide lock of ``domain_id`` for this process (kept until exit)."""
    if domain_id in _held_domains:
        return True
    fd = os.open(_lock_dir() / f"{domain_id}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held_domains[domain_id] = fd
    return True


def claim_domain_id() -> int:
    """A ``ROS_DOMAIN_ID`` no other (live) process using these helpers holds.

    Successive calls return different ids; a process holds at most
    :data:`MAX_DOMAINS_PER_PROCESS` ids and then cycles through its own.
    """
    global _domain_calls
    with _domain_lock:
        call, _domain_calls = _domain_calls, _domain_calls + 1
        if len(_held_domains) >= MAX_DOMAINS_PER_PROCESS:
            held = sorted(_held_domains)
            return held[call % len(held)]
        ids = list(DOMAIN_IDS)
        start = (os.getpid() * 7 + call) % len(ids)
        for offset in range(len(ids)):
            candidate = ids[(start + offset) % len(ids)]
            if candidate not in _held_domains and _try_claim(candidate):
                return candidate
        if _held_domains:
            return sorted(_held_domains)[call % len(_held_domains)]
        raise RuntimeError("no free ROS_DOMAIN_ID in 1..101: too many concurrent ROS test processes")


def ros_environment(base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base_env`` (default ``os.environ``) set up for an isolated ROS 2 test.

    Sets a fresh ``ROS_DOMAIN_ID``, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``,
    ``RMW_IMPLEMENTATION=rmw_fastrtps_cpp``, ``PYTHONUNBUFFERED=1`` and
    ``AMENT_PREFIX_PATH=sys.prefix`` (the venv, where the ROS wheels put their ament index),
    and drops settings that would override them (``ROS_LOCALHOST_ONLY``, ``ROS_STATIC_PEERS``).
    """
    env = dict(os.environ if base_env is None else base_env)
    for key in ("ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS"):
        env.pop(key, None)
    env.update(
        ROS_DOMAIN_ID=str(claim_domain_id()),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
        PYTHONUNBUFFERED="1",
        AMENT_PREFIX_PATH=sys.prefix,
    )
    return env


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05, message: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy and return that.

    Raises:
        AssertionError: with ``message`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout:g} s")
        time.sleep(interval)


# ----------------------------------------------------------------------------- processes
class RosProcess:
    """A child process (``python -m module args`` or any command) with output in a log file.

    ``target`` is a module name (run with this interpreter's ``-m``) or a full command
    sequence; ``args`` are appended. The working directory defaults to the repository root so
    the project's packages are importable. Use as a context manager: leaving it stops the
    process (SIGINT, then SIGTERM, then SIGKILL).
    """

    def __init__(
        self,
        target: str | Sequence[str],
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | str | None = None,
        cwd: Path | str | None = None,
    ):
        base = [sys.executable, "-m", target] if isinstance(target, str) else list(target)
        self.command = [*base, *map(str, args)]
        self.env = dict(env) if env is not None else ros_environment()
        self.cwd = Path(cwd) if cwd is not None else REPO_ROOT
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="mds_ros_process_", suffix=".log")
            os.close(handle)
            log_path = name
        self.log_path = Path(log_path)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RosProcess:
        """Start the process (once)."""
        if self._process is not None:
            raise RuntimeError("process already started")
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        return self._require().pid

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while running."""
        return self._require().poll()

    @property
    def running(self) -> bool:
        """True while the process is started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; ``AssertionError`` with the log on timeout."""
        try:
            return self._require().wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.command} still running after {timeout:g} s; log:\n{self.log()}") from None

    def stop(self, sigint_timeout: float = 5.0, sigterm_timeout: float = 3.0) -> int | None:
        """Stop the process: SIGINT, then SIGTERM, then SIGKILL; returns the exit status."""
        process = self._process
        if process is None:
            return None
        for sig, timeout in ((signal.SIGINT, sigint_timeout), (signal.SIGTERM, sigterm_timeout), (signal.SIGKILL, 5.0)):
            if process.poll() is not None:
                break
            try:
                process.send_signal(sig)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        return process.poll()

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float) -> str:
        """Wait until ``text`` appears in the log; fails early if the process exits without it."""

        def seen() -> bool:
            if text in self.log():
                return True
            if not self.running:
                raise AssertionError(f"process exited ({self.returncode}) before logging {text!r}:\n{self.log()}")
            return False

        wait_until(seen, timeout, message=f"{text!r} not logged within {timeout:g} s")
        return self.log()

    def _require(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("process not started")
        return self._process

    def __enter__(self) -> RosProcess:
        return self.start() if self._process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- in-test node
def _qos_profile(qos: Any) -> Any:
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    if isinstance(qos, QoSProfile):
        return qos
    if qos == "reliable":
        return QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    if qos in ("sensor", "best_effort"):
        return QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
    raise ValueError(f"qos must be 'reliable', 'sensor'/'best_effort' or a QoSProfile, got {qos!r}")


class Probe:
    """An rclpy node inside the test process, in the domain of ``env``, spun in a thread.

    ``wait_for_publishers`` / ``wait_for_subscribers`` count the endpoints of *other* nodes
    (the probe's own subscriptions and publishers are left out), so a probe that subscribes to
    a topic can still wait for the node under test to subscribe to it. The node name is unique
    per probe unless ``name`` is given.

    It has its own ``Context`` (initialised with ``domain_id`` from ``env``, which takes
    precedence over the process environment) and sets the discovery range and RMW variables of
    ``env`` in ``os.environ`` before initialising, because rcl reads those from the process
    environment only.
    """

    def __init__(self, env: Mapping[str, str] | None = None, name: str | None = None):
        self.env = dict(env) if env is not None else ros_environment()
        self.name = name or f"mds_test_probe_{os.getpid()}_{next(_probe_ids)}"
        self._lock = threading.Lock()
        self._messages: dict[str, list[Any]] = defaultdict(list)
        self._arrivals: dict[str, list[float]] = defaultdict(list)  # time.monotonic() of each message
        self._subscriptions: list[Any] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.context: Any = None
        self.node: Any = None
        self.executor: Any = None

    # lifecycle
    def start(self) -> Probe:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "RMW_IMPLEMENTATION", "AMENT_PREFIX_PATH"):
            if key in self.env:
                os.environ[key] = self.env[key]
        os.environ.pop("ROS_LOCALHOST_ONLY", None)
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(self.env["ROS_DOMAIN_ID"]))
        self.node = rclpy.create_node(self.name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{self.name}_spin", daemon=True)
        self._thread.start()
        return self

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except ExternalShutdownException:
                return

    def close(self) -> None:
        """Stop spinning, destroy the node and shut the context down."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=1)
        if self.node is not None:
            self.node.destroy_node()
        if self.context is not None:
            self.context.try_shutdown()

    def __enter__(self) -> Probe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # topics
    def subscribe(self, topic: str, msg_type: type, qos: Any = "reliable") -> None:
        """Record every message of ``topic`` (see :meth:`messages`)."""

        def record(message: Any) -> None:
            with self._lock:
                self._messages[topic].append(message)
                self._arrivals[topic].append(time.monotonic())

        self._subscriptions.append(self.node.create_subscription(msg_type, topic, record, _qos_profile(qos)))

    def publisher(self, topic: str, msg_type: type, qos: Any = "reliable") -> Any:
        """An rclpy publisher on the probe's node."""
        return self.node.create_publisher(msg_type, topic, _qos_profile(qos))

    def messages(self, topic: str) -> list[Any]:
        """A copy of the messages received on ``topic`` so far, in arrival order."""
        with self._lock:
            return list(self._messages[topic])

    def arrivals(self, topic: str) -> list[float]:
        """When each message of :meth:`messages` was received (``time.monotonic()``)."""
        with self._lock:
            return list(self._arrivals[topic])

    def clear(self, topic: str | None = None) -> None:
        with self._lock:
            if topic is None:
                self._messages.clear()
                self._arrivals.clear()
            else:
                self._messages[topic].clear()
                self._arrivals[topic].clear()

    def wait_for_messages(self, topic: str, count: int, timeout: float) -> list[Any]:
        """Wait until ``count`` messages of ``topic`` arrived; returns them all."""
        wait_until(
            lambda: len(self.messages(topic)) >= count, timeout,
            message=f"{topic}: {len(self.messages(topic))} of {count} messages within {timeout:g} s",
        )
        return self.messages(topic)

    def _is_own(self, endpoint: Any) -> bool:
        return endpoint.node_name == self.node.get_name() and endpoint.node_namespace == self.node.get_namespace()

    def publisher_count(self, topic: str) -> int:
        """Publishers of ``topic`` in the graph, the probe's own left out."""
        return sum(not self._is_own(e) for e in self.node.get_publishers_info_by_topic(topic))

    def subscriber_count(self, topic: str) -> int:
        """Subscriptions of ``topic`` in the graph, the probe's own left out."""
        return sum(not self._is_own(e) for e in self.node.get_subscriptions_info_by_topic(topic))

    def wait_for_publishers(self, topic: str, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``count`` publishers of ``topic`` (other than the probe's) are in the graph."""
        wait_until(lambda: self.publisher_count(topic) >= count, timeout,
                   message=f"{topic}: fewer than {count} publisher(s) within {timeout:g} s")

    def wait_for_subscribers(self, topic: str, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``count`` subscriptions of ``topic`` (other than the probe's) are in the graph."""
        wait_until(lambda: self.subscriber_count(topic) >= count, timeout,
                   message=f"{topic}: fewer than {count} subscriber(s) within {timeout:g} s")


# ----------------------------------------------------------------------------- a camera driver
_LARGE_IMAGE_DRIVER = """
import sys, time
import numpy as np, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("camera_driver")
publisher = node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
deadline = time.monotonic() + 60
while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
message = Image(height=720, width=1280, encoding="rgb8", step=3 * 1280)
message.data = np.random.default_rng(0).integers(0, 255, 720 * 1280 * 3, dtype=np.uint8).tobytes()
message.header.frame_id = "camera"
for frame in range(int(sys.argv[1])):
    message.header.stamp.sec, message.header.stamp.nanosec = 100 + frame // 30, (frame % 30) * 33_000_000
    publisher.publish(message)
    time.sleep(1 / 30)
"""


def profile_without_segment(path: Path) -> Path:
    """A Fast DDS profile file of a user's own that sets no shared-memory segment (Fast DDS's 512 KB apply)."""
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<profiles '
                    'xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"><participant profile_name="own">'
                    "<rtps/></participant></profiles>\n")
    return path


def large_image_driver(env: Mapping[str, str], directory: Path, frames: int) -> RosProcess:
    """A camera driver process that sends ``frames`` 1280x720 rgb8 images (2.7 MB) best effort at 30 Hz on
    ``/camera/image_raw`` once a subscriber matched, with Fast DDS's default 512 KB shared memory (a profile of
    its own that sets no segment): most lose a UDP fragment on the way."""
    profile = profile_without_segment(directory / "driver_profile.xml")
    return RosProcess([sys.executable, "-c", _LARGE_IMAGE_DRIVER, str(frames)],
                      env={**env, "FASTRTPS_DEFAULT_PROFILES_FILE": str(profile)}, log_path=directory / "driver.log")



def message_differences(first: Any, second: Any, path: str = "") -> list[str]:
    """The fields in which two ROS messages differ, as ``path: a != b`` lines (empty when equal).

    Compare messages by their fields, not by their serialised bytes: CDR pads after strings, and the
    padding bytes are whatever the serialiser's buffer held (they differ between runs and machines)."""
    if not hasattr(first, "get_fields_and_field_types"):
        if hasattr(first, "__len__") and not isinstance(first, str):  # sequences, arrays, byte buffers
            first, second = list(first), list(second)
            if first == second:
                return []
            if len(first) != len(second):
                return [f"{path}: {len(first)} != {len(second)} elements"]
            return [line for i, (a, b) in enumerate(zip(first, second))
                    for line in message_differences(a, b, f"{path}[{i}]")]
        return [] if first == second else [f"{path}: {first!r} != {second!r}"]
    if type(first) is not type(second):
        return [f"{path}: {type(first).__name__} != {type(second).__name__}"]
    return [line for field in first.get_fields_and_field_types()
            for line in message_differences(getattr(first, field), getattr(second, field), f"{path}.{field}")]
