"""Counters of the perception node and their ``diagnostic_msgs/DiagnosticArray`` rendering.

Key names are stable (the benchmark and the tests read them): ``input_rate_hz``,
``output_rate_hz``, ``frames_received`` (every paired image), ``frames_accepted`` (those that
passed the checks), ``frames_processed``, ``frames_dropped`` (valid frames replaced by a newer
one while inference was busy), ``malformed_messages`` (refused as malformed, never counted as
dropped), ``failed_frames``, ``resets``, ``checkpoints_swapped``, ``checkpoints_refused``,
``camera_messages_lost`` (images the middleware reported lost before they reached the node),
``depth_scale`` (applied now; "not estimated yet" before the first ground plane),
``depth_scale_spread`` and ``frames_without_ground_plane`` (camera-height scale),
``latency_<stage>_median_ms`` / ``latency_<stage>_p99_ms``
for the stages ``conversion``, ``network``, ``publish`` and ``total``, ``device``, ``model``.
"""

from __future__ import annotations

import os
import threading
import traceback
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from mds_core.inference.streaming import LatencyStats, RateMeter

#: Longest ``last_problem`` text in a diagnostics message.
MAX_PROBLEM_LENGTH = 300
#: Distinct failure causes logged in full; later new causes are counted only.
MAX_LOGGED_CAUSES = 100


def failure_cause(error: BaseException) -> str:
    """``Type at file:line`` of the innermost frame: what tells one failure cause from another."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"
    return f"{type(error).__name__} at {where}"


class CauseLog:
    """Remembers which failure causes were logged, so each is logged once (thread-safe)."""

    def __init__(self, limit: int = MAX_LOGGED_CAUSES):
        self._seen: set[str] = set()
        self._limit = limit
        self._lock = threading.Lock()

    def first_time(self, error: BaseException) -> str | None:
        """The cause of ``error`` when it was not seen before (and the limit is not reached), else None."""
        cause = failure_cause(error)
        with self._lock:
            if cause in self._seen or len(self._seen) >= self._limit:
                return None
            self._seen.add(cause)
        return cause

STATUS_NAME = "mds_perception: depth and scene decomposition"


@dataclass
class NodeStatistics:
    frames_received: int = 0
    frames_accepted: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    malformed_messages: int = 0
    camera_messages_lost: int = 0  # reported lost by the middleware on the way (best effort)
    failed_frames: int = 0
    resets: int = 0
    checkpoints_swapped: int = 0
    checkpoints_refused: int = 0
    models_loaded: int = 0  # configure transitions that loaded a model (a re-activation loads none)
    frames_without_ground_plane: int = 0  # camera-height scale: frames whose scale could not be measured
    depth_scale: str = "1"  # published units per network depth unit, as the node applies it now
    depth_scale_spread: str = ""  # camera-height scale: std/median of its running window
    last_problem: str = ""
    worker_failure: str = ""  # why the inference worker stopped; empty while it runs
    input_rate: RateMeter = field(default_factory=RateMeter)
    output_rate: RateMeter = field(default_factory=RateMeter)
    latency: LatencyStats = field(default_factory=LatencyStats)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, **increments: int) -> None:
        with self.lock:
            for name, value in increments.items():
                setattr(self, name, getattr(self, name) + value)


def clip_problem(text: str) -> str:
    """``text`` shortened to :data:`MAX_PROBLEM_LENGTH` characters."""
    return text if len(text) <= MAX_PROBLEM_LENGTH else text[:MAX_PROBLEM_LENGTH - 3] + "..."


INACTIVE_MESSAGES = {"unconfigured": "unconfigured: no model loaded (configure, then activate)",
                     "inactive": "inactive: model loaded, not taking frames (activate)",
                     "finalized": "finalized: shutting down"}


class DiagnosticsReporter:
    """Turns :class:`NodeStatistics` into one status per period: WARN while frames are dropped,
    camera images are lost on the way or malformed messages arrive; ERROR while every recent frame
    failed, when frames were accepted for ``stall_periods`` periods without any output (stalled),
    or when the inference worker has stopped."""

    def __init__(self, statistics: NodeStatistics, hardware_id: str, static_values: dict[str, str],
                 stall_periods: int = 10):
        self.statistics = statistics
        self.hardware_id = hardware_id
        self.static_values = static_values
        self.stall_periods = stall_periods
        self._last = (0, 0, 0, 0, 0, 0)
        self._periods_without_output = 0
        self.state = "active"  # the node's lifecycle state; only an active node takes frames
        self.subscribed_outputs = 0  # output topics with a subscriber (outputs nobody takes are not built)

    def status(self) -> DiagnosticStatus:
        s = self.statistics
        with s.lock:
            counts = (s.frames_dropped, s.malformed_messages, s.failed_frames, s.frames_processed, s.frames_accepted,
                      s.camera_messages_lost)
            worker_failure = s.worker_failure
            values = {
                "input_rate_hz": f"{s.input_rate.rate():.2f}",
                "output_rate_hz": f"{s.output_rate.rate():.2f}",
                "frames_received": str(s.frames_received),
                "frames_accepted": str(s.frames_accepted),
                "frames_processed": str(s.frames_processed),
                "frames_dropped": str(s.frames_dropped),
                "malformed_messages": str(s.malformed_messages),
                "camera_messages_lost": str(s.camera_messages_lost),
                "failed_frames": str(s.failed_frames),
                "resets": str(s.resets),
                "checkpoints_swapped": str(s.checkpoints_swapped),
                "checkpoints_refused": str(s.checkpoints_refused),
                "models_loaded": str(s.models_loaded),
                "depth_scale": s.depth_scale,
                "depth_scale_spread": s.depth_scale_spread,
                "frames_without_ground_plane": str(s.frames_without_ground_plane),
                "last_problem": clip_problem(s.last_problem),
            }
        for stage, (median, p99) in s.latency.summary().items():
            values[f"latency_{stage}_median_ms"] = f"{median * 1e3:.2f}"
            values[f"latency_{stage}_p99_ms"] = f"{p99 * 1e3:.2f}"
        values.update(self.static_values)
        values["lifecycle_state"] = self.state
        values["subscribed_outputs"] = str(self.subscribed_outputs)
        dropped, malformed, failed, processed, accepted, lost = (now - before for now, before in zip(counts, self._last))
        self._last = counts
        stalled = self._stalled(accepted, processed)
        level, message = DiagnosticStatus.OK, "ok"
        if counts[3] == 0 and counts[2] == 0:
            message = "waiting for images"
        if dropped:
            level, message = DiagnosticStatus.WARN, f"dropped {dropped} frames: inference is slower than the camera"
        if lost:
            level, message = DiagnosticStatus.WARN, (f"{lost} camera images lost on the way: a publisher on this machine "
                                                     "sending images over 512 KB needs a Fast DDS profile with a larger "
                                                     "shared-memory segment (config/fastdds.xml, docs/ros.md)")
        if malformed:
            level, message = DiagnosticStatus.WARN, f"{malformed} malformed messages: {values['last_problem']}"
        if failed and not processed:
            level, message = DiagnosticStatus.ERROR, f"frames fail: {values['last_problem']}"
        if stalled:
            level, message = DiagnosticStatus.ERROR, (f"stalled: frames arrive but none was processed for "
                                                      f"{self._periods_without_output} periods")
        if worker_failure:
            level, message = DiagnosticStatus.ERROR, f"inference stopped: {clip_problem(worker_failure)}"
        elif self.state != "active":
            level, message = DiagnosticStatus.OK, INACTIVE_MESSAGES.get(self.state, self.state)
        return diagnostic_status(STATUS_NAME, level, message, self.hardware_id, values)

    def _stalled(self, accepted: int, processed: int) -> bool:
        """Count periods in which frames were accepted and none processed; True from ``stall_periods`` on."""
        if processed or self.state != "active":
            self._periods_without_output = 0
        elif accepted:
            self._periods_without_output += 1
        return self._periods_without_output >= self.stall_periods

    def array(self, stamp) -> DiagnosticArray:
        return diagnostic_array(stamp, self.status())


def diagnostic_status(name: str, level: bytes, message: str, hardware_id: str,
                      values: dict[str, str]) -> DiagnosticStatus:
    """One ``DiagnosticStatus`` with ``values`` as key/value pairs."""
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])


def diagnostic_array(stamp, *statuses: DiagnosticStatus) -> DiagnosticArray:
    """A ``/diagnostics`` message stamped ``stamp``."""
    message = DiagnosticArray()
    message.header.stamp = stamp
    message.status = list(statuses)
    return message
