"""Issue 12: the perception node, a real process over Fast DDS, under hostile input.

Each test names the finding of the issue it covers. The node never goes silent: crafted
compressed images, decompression bombs, floods of malformed messages, overflowing camera
infos, huge client strings, truncated JPEGs and padded rows are refused (counted as malformed)
or served, and valid frames keep their outputs. Messages are built by :mod:`hostile_messages`.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

import hostile_messages as hostile
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from ros_support import Probe, RosProcess, ros_environment, wait_until
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from mds_core.checkpoint import write_untrained_checkpoint
from mds_core.config import ModelConfig
from mds_ros.tools.launch_file import load_launch

pytestmark = pytest.mark.ros

NODE = "/mds_perception"
DEPTH = f"{NODE}/depth/image"
DEPTH_INFO = f"{NODE}/depth/camera_info"
MODEL_W, MODEL_H, K = 64, 64, 2
W, H = hostile.WIDTH, hostile.HEIGHT


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "untrained.pt"
    return write_untrained_checkpoint(path, ModelConfig(width=MODEL_W, height=MODEL_H, depth_encoder="resnet18",
                                                        pose_mask_encoder="resnet18", num_components=K))


def stamp_ns(message) -> int:
    return message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Session:
    """A running node and a probe publishing camera messages to it and recording its outputs."""

    def __init__(self, node: RosProcess, probe: Probe, compressed: bool, camera_info: bool):
        self.node, self.probe = node, probe
        self.compressed, self.camera_info = compressed, camera_info
        topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
        self.images = probe.publisher(topic, CompressedImage if compressed else Image)
        self.infos = probe.publisher("/camera/camera_info", CameraInfo) if camera_info else None
        self.topic = topic

    def send(self, image, info=None) -> None:
        """Publish one frame (its camera info first when the node pairs them)."""
        if self.infos is not None and info is not None:
            self.infos.publish(info)
        self.images.publish(image)

    def valid(self, stamp: float):
        return hostile.valid_frame(stamp, compressed=self.compressed)

    def outputs(self) -> set[int]:
        return {stamp_ns(m) for m in self.probe.messages(DEPTH)}

    def served(self, stamp: float, timeout: float = 30.0) -> None:
        """Wait for the depth output of the frame stamped ``stamp``."""
        ns = hostile.nanoseconds(stamp)
        wait_until(lambda: ns in self.outputs(), timeout, message=f"no output for the frame at {stamp} s; log:\n"
                   f"{self.node.log()[-3000:]}")

    def diagnostics(self) -> dict[str, str]:
        messages = self.probe.messages("/diagnostics")
        if not messages:
            return {}
        return {kv.key: kv.value for kv in messages[-1].status[0].values}

    def status(self) -> DiagnosticStatus | None:
        messages = self.probe.messages("/diagnostics")
        return messages[-1].status[0] if messages else None

    def wait_for(self, key: str, predicate, timeout: float = 30.0) -> dict[str, str]:
        return wait_until(lambda: predicate(self.diagnostics().get(key)) and self.diagnostics(), timeout,
                          message=f"diagnostics {key} = {self.diagnostics().get(key)!r} never satisfied the test; "
                                  f"log:\n{self.node.log()[-3000:]}")

    def count(self, key: str) -> int:
        return int(self.diagnostics().get(key, "0"))

    def settle(self, timeout: float = 30.0) -> dict[str, str]:
        """Wait until every frame received is accounted for (processed, dropped, malformed or failed)."""
        def settled() -> dict[str, str] | None:
            v = self.diagnostics()
            done = sum(int(v.get(k, 0)) for k in ("frames_processed", "frames_dropped", "malformed_messages",
                                                   "failed_frames"))
            return v if v and done == int(v["frames_received"]) else None
        return wait_until(settled, timeout, message=f"frames unaccounted for: {self.diagnostics()}")


def node_command(checkpoint: Path, parameters: dict, python: str = sys.executable) -> list[str]:
    spec = load_launch("mds.launch.xml", {"checkpoint": str(checkpoint), "device": "cpu"})[0]
    spec.parameters.update(parameters)
    return spec.command(python)


@contextmanager
def session(checkpoint: Path, tmp_path: Path, *, compressed: bool = False, camera_info: bool = True,
            command: list[str] | None = None, survives: bool = True, **parameters):
    """Start the node (raw or compressed transport, camera info from the topic or parameters),
    connect a probe and wait until a first valid frame has been served."""
    parameters = {"diagnostics_period": 0.1, "checkpoint_poll_period": 0.0, "publish_point_cloud": False,
                  "publish_overlay": False, **parameters}
    if compressed:
        parameters["input_transport"] = "compressed"
    if not camera_info:
        parameters.setdefault("camera_info_source", "parameters")
        parameters.setdefault("intrinsics", [100.0, 100.0, W / 2, H / 2])
    env = ros_environment()
    command = command or node_command(checkpoint, parameters)
    with RosProcess(command, env=env, log_path=tmp_path / "node.log") as node, Probe(env) as probe:
        probe.subscribe(DEPTH, Image)
        probe.subscribe(DEPTH_INFO, CameraInfo)
        probe.subscribe("/diagnostics", DiagnosticArray)
        run = Session(node, probe, compressed, camera_info)
        probe.wait_for_subscribers(run.topic, 1, timeout=60)
        probe.wait_for_publishers(DEPTH, 1, timeout=60)
        wait_until(lambda: run.images.get_subscription_count() and probe.node.count_publishers(DEPTH), 30)
        warm = iter(np.arange(1.0, 60.0, 0.2))

        def warmed_up() -> bool:  # the first messages after matching can be lost in discovery
            run.send(*run.valid(next(warm)))
            return _poll(lambda: probe.messages(DEPTH), 0.5)
        wait_until(warmed_up, 60, interval=0.0, message=f"no output for a warm-up frame:\n{node.log()}")
        run.wait_for("frames_processed", lambda v: v is not None and int(v) >= 1)
        run.settle()
        yield run
        if survives:
            assert node.running, f"the node exited:\n{node.log()}"
            assert "Traceback" not in node.log(), node.log()


def _poll(predicate, timeout: float) -> bool:
    try:
        wait_until(predicate, timeout)
        return True
    except AssertionError:
        return False


# ----------------------------------------------------------------------------- findings 1, 2, 5
def test_crafted_compressed_images_bombs_and_long_strings_never_stop_the_node(checkpoint, tmp_path):
    """1: cv2.error from a BMP declaring width 2,000,000 or a PAM of height 0 used to kill the worker.
    2: a 631-byte JPEG declaring 12000x12000 used to be decoded (+560 MiB) before the size check.
    5: a 64 KiB format string used to be copied whole into the log and every diagnostics message."""
    with session(checkpoint, tmp_path, compressed=True) as run:
        before = run.count("malformed_messages")
        baseline_rss = rss_mib(run.node.pid)
        crafted = [hostile.bmp_huge_width(), hostile.pam_zero_height(), hostile.jpeg_bomb(12000, 12000),
                   hostile.png_bomb(), hostile.long_format()]
        peak = baseline_rss
        for index, image in enumerate(crafted):
            stamp = 10.0 + index
            run.send(*hostile.with_info(image, stamp))
            run.wait_for("malformed_messages", lambda v, n=before + index + 1: v == str(n))
            peak = max(peak, rss_mib(run.node.pid))
            run.send(*run.valid(stamp + 0.5))  # the worker is alive: the next valid frame is served
            run.served(stamp + 0.5)
        values = run.diagnostics()
        assert len(values["last_problem"]) <= 300
        assert all(len(kv.value) <= 300 for kv in run.status().values)
        assert len(run.status().message) <= 400
        assert peak - baseline_rss < 100, f"memory grew by {peak - baseline_rss:.0f} MiB"
        assert max(len(line) for line in run.node.log().splitlines()) < 2000


# ----------------------------------------------------------------------------- finding 3
@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
def test_malformed_messages_never_displace_a_waiting_valid_frame(checkpoint, tmp_path, compressed):
    """3: a malformed message entered the one-frame mailbox before any check, replaced the valid
    frame waiting there and was counted as 'dropped'. Bursts of (valid, valid, malformed): the
    second valid frame of every burst must be served, and nothing malformed is called dropped.
    The compressed case sends a truncated JPEG that passes the cheap checks and fails to decode."""
    with session(checkpoint, tmp_path, compressed=compressed) as run:
        start = {key: run.count(key) for key in ("malformed_messages", "frames_processed", "frames_dropped",
                                                 "frames_received")}
        bursts = 8
        for burst in range(bursts):
            stamp = 20.0 + burst
            bad = hostile.truncated_jpeg(stamp + 0.2) if compressed else hostile.raw_kinds(stamp + 0.2)[burst]
            run.send(*run.valid(stamp))
            run.send(*run.valid(stamp + 0.1))
            run.send(*bad)
            run.served(stamp + 0.1)
        values = run.settle()
        # best-effort (sensor-data) delivery may lose a message of a burst before the node sees it:
        # count against what arrived; every arrival is accounted for, and nothing malformed is dropped
        received = int(values["frames_received"]) - start["frames_received"]
        lost = 3 * bursts - received
        malformed = int(values["malformed_messages"]) - start["malformed_messages"]
        processed = int(values["frames_processed"]) - start["frames_processed"]
        dropped = int(values["frames_dropped"]) - start["frames_dropped"]
        assert lost < bursts and malformed >= bursts - lost and processed + dropped >= 2 * bursts - lost, values
        assert malformed + processed + dropped == received, values


# ----------------------------------------------------------------------------- finding 4 and 6c
def test_overflowing_or_nan_camera_info_is_malformed_and_never_half_published(checkpoint, tmp_path):
    """4: fx=1e308 overflowed when rescaled: depth published without its camera info, the frame
    counted as failed. 6: NaN distortion coefficients were copied into ~/depth/camera_info."""
    with session(checkpoint, tmp_path) as run:
        malformed, failed = run.count("malformed_messages"), run.count("failed_frames")
        depth_before, info_before = len(run.probe.messages(DEPTH)), len(run.probe.messages(DEPTH_INFO))
        for index, mutate in enumerate(hostile.CAMERA_INFO_KINDS.values()):
            image, info = run.valid(30.0 + index)
            mutate(info)
            run.send(image, info)
            run.wait_for("malformed_messages", lambda v, n=malformed + index + 1: v == str(n))
        run.send(*run.valid(40.0))
        run.served(40.0)
        wait_until(lambda: len(run.probe.messages(DEPTH_INFO)) == info_before + 1, 10)
        assert len(run.probe.messages(DEPTH)) == depth_before + 1
        assert run.count("failed_frames") == failed
        for info in run.probe.messages(DEPTH_INFO):
            assert np.all(np.isfinite(info.d)) and np.all(np.isfinite(info.k))


# ----------------------------------------------------------------------------- finding 6a, 6b
def test_truncated_jpeg_and_a_size_change_against_parameter_intrinsics_are_refused(checkpoint, tmp_path):
    """6: a truncated JPEG with an end marker decoded to a partly grey frame and was processed;
    with camera_info_source: parameters an image of another size was processed with intrinsics
    meant for another resolution."""
    with session(checkpoint, tmp_path, compressed=True, camera_info=False, intrinsics_size=[W, H]) as run:
        malformed = run.count("malformed_messages")
        run.send(*hostile.truncated_jpeg(50.0))
        run.wait_for("malformed_messages", lambda v: v == str(malformed + 1))
        run.send(*hostile.valid_frame(51.0, compressed=True, size=(W + 16, H)))
        run.wait_for("malformed_messages", lambda v: v == str(malformed + 2))
        assert "intrinsics" in run.diagnostics()["last_problem"]
        assert not {hostile.nanoseconds(50.0), hostile.nanoseconds(51.0)} & run.outputs()
        run.send(*run.valid(52.0))
        run.served(52.0)


def test_intrinsics_are_rescaled_when_asked_to(checkpoint, tmp_path):
    """6: ``intrinsics_size_mismatch: rescale`` scales the parameter intrinsics to the image size."""
    with session(checkpoint, tmp_path, compressed=True, camera_info=False, intrinsics_size=[W // 2, H // 2],
                 intrinsics=[50.0, 50.0, W / 4, H / 4], intrinsics_size_mismatch="rescale") as run:
        info = run.probe.messages(DEPTH_INFO)[-1]
        assert info.k[0] == pytest.approx(100.0 * MODEL_W / W)
        assert info.k[4] == pytest.approx(100.0 * MODEL_H / H)


# ----------------------------------------------------------------------------- finding 7
def test_padded_rows_are_converted_without_a_per_row_loop(checkpoint, tmp_path):
    """7: rows with padding (the last one without it) went through a per-row Python loop: 510 ms
    for a legal 1x1,000,000 mono8 image (here 1x250,000: about 130 ms before the fix). The conversion
    stage must stay far below that."""
    with session(checkpoint, tmp_path) as run:
        processed = run.count("frames_processed")
        for index in range(3):
            run.send(*hostile.tall_padded_mono8(60.0 + index))
            run.served(60.0 + index)
        values = run.wait_for("frames_processed", lambda v: int(v) >= processed + 3)
        assert float(values["latency_conversion_p99_ms"]) < 50, values


# ----------------------------------------------------------------------------- worker, diagnostics
INJECTED = """
import sys, time
from mds_ros import perception_node as p
serve = p.PerceptionNode._serve
stuck = []
def faulty(self, frames):
    second = frames[0].image.header.stamp.sec
    if second in (70, 71):
        raise RuntimeError("injected failure")
    if second == 72 and not stuck:
        stuck.append(True)
        time.sleep(8.0)  # a stuck inference (once): frames keep arriving, no output
    if second == 73:
        raise SystemExit("injected: the worker ends")
    return serve(self, frames)
p.PerceptionNode._serve = faulty
sys.exit(p.main(sys.argv[1:]))
"""


def test_a_frame_cannot_kill_the_worker_stalls_are_errors_and_a_dead_worker_exits_non_zero(checkpoint, tmp_path):
    """2nd part of the issue: any exception is counted and logged once per cause and the loop goes
    on; inputs without outputs for stall_periods periods is an ERROR; if the worker still dies
    the node reports ERROR and exits non-zero (a launch respawn restarts it). Faults are injected
    into a real node process."""
    base = node_command(checkpoint, {"diagnostics_period": 0.1, "checkpoint_poll_period": 0.0,
                                     "stall_periods": 3, "publish_point_cloud": False})
    command = [base[0], "-c", INJECTED, *base[3:]]  # python -c INJECTED instead of the entry point
    with session(checkpoint, tmp_path, command=command, survives=False) as run:
        failed = run.count("failed_frames")
        for stamp in (70.0, 71.0):
            run.send(*run.valid(stamp))
            run.wait_for("failed_frames", lambda v, n=failed + stamp - 69: v == str(int(n)))
        run.send(*run.valid(75.0))
        run.served(75.0)
        assert run.node.log().count("first time for RuntimeError") == 1  # logged once for this cause
        stalled = threading.Event()

        def feed() -> None:  # frames of second 72: the first that arrives gets stuck, the rest wait
            for index in range(160):
                if stalled.is_set():
                    return
                run.send(*run.valid(72.0 + 0.005 * index))
                time.sleep(0.05)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        wait_until(lambda: run.status() and run.status().level == DiagnosticStatus.ERROR
                   and "stalled" in run.status().message, 30, message="no stalled ERROR")
        stalled.set()
        feeder.join()
        wait_until(lambda: any(72_000_000_000 <= ns < 73_000_000_000 for ns in run.outputs()), 30,
                   message="the stuck frame was never served")
        run.send(*run.valid(73.0))
        assert run.node.wait(30) == 1
        status = run.status()
        assert status.level == DiagnosticStatus.ERROR and "inference stopped" in status.message


# ----------------------------------------------------------------------------- flood
class MemorySampler:
    """Samples a process's resident memory every 50 ms in a thread; ``peak`` since the last ``reset``."""

    def __init__(self, pid: int):
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mib(self.pid))

    def reset(self) -> float:
        peak, self.peak = self.peak, 0.0
        return peak

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def paced(run: Session, start: float, frames: int, period: float, garbage: list) -> set[int]:
    """Send ``frames`` valid frames every ``period`` seconds, each followed by an even share of the
    ``garbage`` spread over the period; returns the stamps of the valid frames."""
    share = -(-len(garbage) // frames) if garbage else 0
    stamps, began = set(), time.monotonic()
    for index in range(frames):
        stamp = start + index * period
        run.send(*run.valid(stamp))
        stamps.add(hostile.nanoseconds(stamp))
        for offset, (image, info) in enumerate(garbage[index * share: (index + 1) * share]):
            t = stamp + 0.001 + offset * 1e-5  # a stamp of its own, between two valid frames
            for message in (image, info):
                message.header.stamp.sec, message.header.stamp.nanosec = divmod(hostile.nanoseconds(t), 10**9)
            run.send(image, info)
            time.sleep(0.8 * period / share)
        time.sleep(max(0.0, began + (index + 1) * period - time.monotonic()))
    return stamps


@pytest.mark.slow
@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
def test_flood_of_malformed_messages(checkpoint, tmp_path, compressed):
    """Done-when of issue 12: 2,000 malformed messages of every kind interleaved with valid frames
    at a modest pace: the node serves at least 95% of the valid frames it serves at the same pace
    without garbage, counts every malformed message as malformed, stays within 100 MiB of its
    steady-state memory and logs no traceback. The node runs without the flow's evidence in its
    moving probability, as it runs without the overlay and the point cloud: a test of the input's
    handling, not of the work per frame. The valid frames come at 5 Hz, 40 malformed messages between
    two: at 10 Hz (400 malformed messages a second) this 2-core machine served 50 of 50 on some days and
    39-47 of 50 on others, the newest valid frame displacing the one before while the flood held the
    cores; at 5 Hz 50 of 50, also with two busy processes beside it."""
    frames, period, total = 50, 0.2, 2000
    with session(checkpoint, tmp_path, compressed=compressed, motion_evidence=False) as run, \
            MemorySampler(run.node.pid) as memory:
        kinds = (hostile.compressed_kinds(0.0) if compressed else hostile.raw_kinds(0.0)) + \
            hostile.camera_info_kinds(0.0, compressed)
        garbage = [kinds[i % len(kinds)] for i in range(total)]
        run.settle()
        clean = paced(run, 100.0, frames, period, [])
        run.settle()
        steady = memory.reset()
        served_clean = len(clean & run.outputs())
        before = run.settle()
        flooded = paced(run, 200.0, frames, period, garbage)
        values = run.settle()
        peak = memory.reset()
        served_flooded = len(flooded & run.outputs())
        delta = {key: int(values[key]) - int(before[key]) for key in
                 ("frames_received", "frames_processed", "frames_dropped", "malformed_messages", "failed_frames")}
        print(f"\n[{'compressed' if compressed else 'raw'}] valid frames served: {served_clean}/{frames} without "
              f"garbage, {served_flooded}/{frames} in the flood of {total} malformed ({len(kinds)} kinds); counted "
              f"{delta}; memory steady {steady:.0f} MiB, peak {peak:.0f} MiB")
        assert served_flooded >= 0.95 * served_clean, (served_flooded, served_clean)
        # every malformed message that arrived is counted as malformed, never as dropped or processed (a
        # few may be lost before the node on its best-effort subscription, as on a real network)
        # (the truncated JPEG with its end marker passes the cheap checks and decodes without an error, like a
        # real frame cut short: displaced by a newer frame before it was decoded, it can only be counted as
        # dropped. How many are displaced depends on timing (25 of its 83 in one CI run): at most all of them)
        undecoded = delta["frames_processed"] + delta["frames_dropped"] - frames
        assert undecoded <= (total / len(kinds) if compressed else 0), delta
        assert delta["malformed_messages"] == delta["frames_received"] - delta["frames_processed"] - \
            delta["frames_dropped"], delta
        # (on a loaded 2-core machine the middleware lost up to 4% of the messages on the way)
        assert delta["malformed_messages"] + max(undecoded, 0) >= 0.95 * total, delta
        assert delta["failed_frames"] == 0, delta
        assert peak - steady <= 100, (peak, steady)
