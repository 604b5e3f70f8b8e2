"""Pair each image with the camera info of the same stamp.

Where ``message_filters`` is importable (a ROS install) the node uses its synchronisers; here
it is not, and :class:`StampPairing` does the same job: an image and a camera info are paired
when their stamps differ by at most ``tolerance`` seconds (0 = identical stamps, what camera
drivers publish). Unpaired messages wait in bounded queues (the oldest is dropped when full),
and a pair discards everything older than itself, so nothing accumulates.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any


def stamp_nanoseconds(message: Any) -> int:
    """``header.stamp`` of a message as integer nanoseconds."""
    stamp = message.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class StampPairing:
    """Calls ``callback(image, info)`` for every image that finds a camera info within ``tolerance``."""

    def __init__(self, callback: Callable[[Any, Any], None], tolerance: float = 0.0, queue_size: int = 10):
        self._callback = callback
        self._tolerance = int(round(tolerance * 1e9))
        self._images: deque[tuple[int, Any]] = deque(maxlen=queue_size)
        self._infos: deque[tuple[int, Any]] = deque(maxlen=queue_size)
        self._lock = threading.Lock()

    def add_image(self, image: Any) -> None:
        self._add(image, self._images, self._infos, image_first=True)

    def add_info(self, info: Any) -> None:
        self._add(info, self._infos, self._images, image_first=False)

    def _add(self, message: Any, own: deque, other: deque, image_first: bool) -> None:
        stamp = stamp_nanoseconds(message)
        with self._lock:
            match = self._closest(other, stamp)
            if match is None:
                own.append((stamp, message))
                return
            partner_stamp, partner = other[match]
            # everything older than this pair can no longer be paired in order
            for _ in range(match + 1):
                other.popleft()
            while own and own[0][0] <= stamp:
                own.popleft()
        image, info = (message, partner) if image_first else (partner, message)
        self._callback(image, info)

    def _closest(self, queue: deque, stamp: int) -> int | None:
        best, best_error = None, None
        for index, (other_stamp, _) in enumerate(queue):
            error = abs(other_stamp - stamp)
            if error <= self._tolerance and (best_error is None or error < best_error):
                best, best_error = index, error
        return best


def message_filters_pairing(node: Any, image_type: type, image_topic: str, info_type: type, info_topic: str,
                            qos: Any, callback: Callable[[Any, Any], None], tolerance: float,
                            queue_size: int, image_options: dict | None = None) -> Any | None:
    """Subscribe through ``message_filters`` when it is importable; None otherwise. ``image_options``: more
    arguments of the image subscription (``event_callbacks``)."""
    try:
        import message_filters
    except ImportError:
        return None
    image_sub = message_filters.Subscriber(node, image_type, image_topic, qos_profile=qos, **(image_options or {}))
    info_sub = message_filters.Subscriber(node, info_type, info_topic, qos_profile=qos)
    if tolerance > 0:
        sync = message_filters.ApproximateTimeSynchronizer([image_sub, info_sub], queue_size, tolerance)
    else:
        sync = message_filters.TimeSynchronizer([image_sub, info_sub], queue_size)
    sync.registerCallback(callback)
    return sync, image_sub, info_sub
