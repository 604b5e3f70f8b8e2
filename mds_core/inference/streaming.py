"""Frame streams: the neighbouring-frame bookkeeping that a camera node needs around :class:`Predictor`.

The decomposition of frame ``t`` needs frame ``t-1``; the scene-flow model's motion mask of frame
``t`` needs frames ``t-1`` and ``t+1``, so for that model the stream answers a push of frame
``t+1`` with the prediction of frame ``t`` (one frame of latency; :attr:`StreamOutput.tag` says
which frame an output describes). On a live stream the earlier frames are kept, already
preprocessed and on the inference device, and forgotten when linking them with the new frame
would be wrong:

* time goes backwards (a bag replayed in a loop, a restarted driver),
* the gap between the two stamps exceeds ``max_frame_gap`` (dropped frames, a paused bag),
* the image resolution changes.

The first frame after such a reset has depth only (:attr:`StreamOutput.reset` says why); with the
scene-flow model the frame before a reset has depth and ego-motion only (no next frame).
This module knows nothing about ROS; the node in ``mds_ros`` converts messages and calls
:meth:`FrameStream.push`.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from mds_core.inference.predictor import Prediction, Predictor, PreparedFrame


class ResetReason(str, enum.Enum):
    """Why a frame was predicted without a previous frame."""

    FIRST_FRAME = "first frame"
    TIME_BACKWARDS = "time went backwards"
    GAP = "gap larger than max_frame_gap"
    RESOLUTION = "resolution changed"
    REQUESTED = "reset requested"


@dataclass
class StreamSettings:
    """``max_frame_gap`` in seconds; ``0`` disables the gap check."""

    max_frame_gap: float = 0.5


@dataclass
class StreamOutput:
    """The prediction for one pushed frame.

    Attributes:
        prediction: depth always; masks/labels/transforms when the frame's neighbours were linked
            (components: the previous frame; scene flow: the previous and the next frame).
        reset: why the pushed frame was not linked to the frame pushed before it, or None when it was.
        gap: seconds since the previous frame (None for the first frame).
        prepare_seconds: resize + upload to the device.
        network_seconds: both networks, including the copy of the results to the host.
        tag: the ``tag`` given with the frame this prediction describes (the pushed frame for the
            components model, the frame pushed before it for the scene flow).
        image: ``(h, w, 3)`` uint8 RGB, that frame at the model resolution (what the networks saw).
    """

    prediction: Prediction
    reset: ResetReason | None
    gap: float | None
    prepare_seconds: float
    network_seconds: float
    tag: Any = None
    image: np.ndarray | None = None


@dataclass
class _StreamFrame:
    """A pushed frame as the stream keeps it."""

    prepared: PreparedFrame
    intrinsics: np.ndarray
    stamp: float
    tag: Any
    previous: PreparedFrame | None  # the frame before it, when the two were linked (no reset between)


class FrameStream:
    """Pushes frames of one camera through a :class:`Predictor`, keeping the frames it needs.

    Thread-safe: :meth:`push`, :meth:`reset` and :meth:`swap_predictor` may be called from
    different threads; a swap takes effect between two frames and keeps the earlier frames
    (they are input images, not model outputs).
    """

    def __init__(self, predictor: Predictor, settings: StreamSettings | None = None):
        self._predictor = predictor
        self.settings = settings or StreamSettings()
        self._lock = threading.Lock()
        self._previous: _StreamFrame | None = None  # the frame pushed last
        self._reset_requested = False

    @property
    def predictor(self) -> Predictor:
        return self._predictor

    def swap_predictor(self, predictor: Predictor) -> None:
        """Use ``predictor`` from the next frame on (same input size: the previous frame stays)."""
        with self._lock:
            if predictor.size != self._predictor.size:
                self._previous = None
            self._predictor = predictor

    def reset(self) -> None:
        """Forget the previous frame; the next frame is predicted alone."""
        with self._lock:
            self._reset_requested = True

    def _reset_reason(self, stamp: float, size: tuple[int, int]) -> ResetReason | None:
        if self._reset_requested:
            return ResetReason.REQUESTED
        if self._previous is None:
            return ResetReason.FIRST_FRAME
        if stamp < self._previous.stamp:
            return ResetReason.TIME_BACKWARDS
        if self.settings.max_frame_gap > 0 and stamp - self._previous.stamp > self.settings.max_frame_gap:
            return ResetReason.GAP
        if size != self._previous.prepared.original_size:
            return ResetReason.RESOLUTION
        return None

    def push(self, image: np.ndarray, intrinsics: np.ndarray, stamp: float, tag: Any = None) -> StreamOutput | None:
        """Predict for ``image`` (``(H, W, 3)`` uint8 RGB, intrinsics of that size) taken at ``stamp`` s.

        Components model: the prediction of this frame. Scene flow: the prediction of the frame
        pushed before this one (None for the first frame). ``tag`` is handed back with the
        prediction of this frame (the node passes the message header).
        """
        with self._lock:
            predictor = self._predictor
            started = time.perf_counter()
            current = predictor.prepare(image)
            prepared = time.perf_counter()
            reset = self._reset_reason(stamp, current.original_size)
            gap = None if self._previous is None else stamp - self._previous.stamp
            linked = self._previous if reset is None else None
            pushed = _StreamFrame(current, intrinsics, stamp, tag, None if linked is None else linked.prepared)
            if predictor.uses_scene_flow:
                described, following = self._previous, None if linked is None else current
            else:
                described, following = pushed, None
            prediction = None if described is None else predictor.predict(
                described.prepared, described.intrinsics, described.previous, following=following,
                motion_scores=False)
            finished = time.perf_counter()
            self._previous, self._reset_requested = pushed, False
        if prediction is None:
            return None
        return StreamOutput(prediction, reset, gap, prepared - started, finished - prepared, described.tag,
                            described.prepared.image)


class RateMeter:
    """Events per second over a sliding window of ``window`` seconds (monotonic clock)."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        with self._lock:
            self._times.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._times and now - self._times[0] > self.window:
                self._times.popleft()
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0


class LatencyStats:
    """Median and 99th percentile of the last ``capacity`` samples of named stages (seconds)."""

    def __init__(self, capacity: int = 1000):
        self._samples: dict[str, deque[float]] = {}
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(self, **stages: float) -> None:
        with self._lock:
            for name, seconds in stages.items():
                self._samples.setdefault(name, deque(maxlen=self._capacity)).append(seconds)

    def summary(self) -> dict[str, tuple[float, float]]:
        """``{stage: (median_s, p99_s)}`` for every stage seen so far."""
        with self._lock:
            samples = {name: np.asarray(values) for name, values in self._samples.items() if values}
        return {name: (float(np.median(v)), float(np.percentile(v, 99))) for name, v in samples.items()}
