"""Counters of the perception node and their ``diagnostic_msgs/DiagnosticArray`` rendering.

Key names are stable (the benchmark and the tests read them): ``input_rate_hz``,
``output_rate_hz``, ``frames_received``, ``frames_processed``, ``frames_dropped``,
``malformed_messages``, ``resets``, ``checkpoints_swapped``, ``checkpoints_refused``,
``latency_<stage>_median_ms`` / ``latency_<stage>_p99_ms``
for the stages ``conversion``, ``network``, ``publish`` and ``total``, ``device``, ``model``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from mds_core.inference.streaming import LatencyStats, RateMeter

STATUS_NAME = "mds_perception: depth and scene decomposition"


@dataclass
class NodeStatistics:
    frames_received: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    malformed_messages: int = 0
    failed_frames: int = 0
    resets: int = 0
    checkpoints_swapped: int = 0
    checkpoints_refused: int = 0
    last_problem: str = ""
    input_rate: RateMeter = field(default_factory=RateMeter)
    output_rate: RateMeter = field(default_factory=RateMeter)
    latency: LatencyStats = field(default_factory=LatencyStats)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, **increments: int) -> None:
        with self.lock:
            for name, value in increments.items():
                setattr(self, name, getattr(self, name) + value)


class DiagnosticsReporter:
    """Turns :class:`NodeStatistics` into one status per period; WARN while frames are dropped
    or malformed messages arrive, ERROR while every recent frame failed."""

    def __init__(self, statistics: NodeStatistics, hardware_id: str, static_values: dict[str, str]):
        self.statistics = statistics
        self.hardware_id = hardware_id
        self.static_values = static_values
        self._last = (0, 0, 0, 0)

    def status(self) -> DiagnosticStatus:
        s = self.statistics
        with s.lock:
            counts = (s.frames_dropped, s.malformed_messages, s.failed_frames, s.frames_processed)
            values = {
                "input_rate_hz": f"{s.input_rate.rate():.2f}",
                "output_rate_hz": f"{s.output_rate.rate():.2f}",
                "frames_received": str(s.frames_received),
                "frames_processed": str(s.frames_processed),
                "frames_dropped": str(s.frames_dropped),
                "malformed_messages": str(s.malformed_messages),
                "failed_frames": str(s.failed_frames),
                "resets": str(s.resets),
                "checkpoints_swapped": str(s.checkpoints_swapped),
                "checkpoints_refused": str(s.checkpoints_refused),
                "last_problem": s.last_problem,
            }
        for stage, (median, p99) in s.latency.summary().items():
            values[f"latency_{stage}_median_ms"] = f"{median * 1e3:.2f}"
            values[f"latency_{stage}_p99_ms"] = f"{p99 * 1e3:.2f}"
        values.update(self.static_values)
        dropped, malformed, failed, processed = (now - before for now, before in zip(counts, self._last))
        self._last = counts
        level, message = DiagnosticStatus.OK, "ok"
        if counts[3] == 0 and counts[2] == 0:
            message = "waiting for images"
        if dropped:
            level, message = DiagnosticStatus.WARN, f"dropped {dropped} frames: inference is slower than the camera"
        if malformed:
            level, message = DiagnosticStatus.WARN, f"{malformed} malformed messages: {values['last_problem']}"
        if failed and not processed:
            level, message = DiagnosticStatus.ERROR, f"frames fail: {values['last_problem']}"
        return DiagnosticStatus(level=level, name=STATUS_NAME, message=message, hardware_id=self.hardware_id,
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def array(self, stamp) -> DiagnosticArray:
        message = DiagnosticArray()
        message.header.stamp = stamp
        message.status = [self.status()]
        return message
