"""A node's camera input: subscriptions (image + paired camera info, or intrinsics from
parameters) and the decoding of one pair into an RGB array and its camera matrix.

Shared by the perception node and the online training node, so both read a camera the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from mds_core.data.rosbag.decode import UnsupportedEncoding, check_compressed, raw_image_layout
from mds_ros.conversions import (
    ImageConversionError,
    check_camera_info,
    check_image_size,
    compressed_to_rgb,
    cv_bridge_available,
    image_to_rgb,
)
from mds_ros.pairing import StampPairing, message_filters_pairing
from mds_ros.parameters import CameraInputParameters

FrameCallback = Callable[[Any, "CameraInfo | None"], None]
LostCallback = Callable[[int], None]


@dataclass
class CameraSubscription:
    """The subscriptions of one camera input; :meth:`close` destroys them (a lifecycle deactivate)."""

    node: Node
    topic: str  # the image topic
    subscriptions: list = field(default_factory=list)
    filters: tuple = ()  # message_filters objects, kept alive while subscribed

    def close(self) -> None:
        subscriptions = list(self.subscriptions) + [getattr(f, "sub", None) for f in self.filters[1:]]
        for subscription in subscriptions:
            if subscription is not None:
                self.node.destroy_subscription(subscription)
        self.subscriptions, self.filters = [], ()


def subscribe_camera(node: Node, settings: CameraInputParameters, callback: FrameCallback,
                     on_lost: LostCallback | None = None) -> CameraSubscription:
    """Subscribe ``node`` (sensor-data QoS) and call ``callback(image, info)`` for every paired frame
    (``info`` is None with ``camera_info_source: parameters``), and ``on_lost(count)`` when the middleware
    reports images lost on the way (best-effort delivery: large images over UDP lose fragments)."""
    compressed = settings.input_transport == "compressed"
    image_type = CompressedImage if compressed else Image
    image_topic = settings.image_topic.rstrip("/") + ("/compressed" if compressed else "")
    camera = CameraSubscription(node, image_topic)
    events = {} if on_lost is None else {"event_callbacks": SubscriptionEventCallbacks(
        message_lost=lambda info: on_lost(int(info.total_count_change)))}
    if settings.camera_info_source == "parameters":
        camera.subscriptions.append(node.create_subscription(
            image_type, image_topic, lambda message: callback(message, None), qos_profile_sensor_data, **events))
        return camera
    synchroniser = message_filters_pairing(node, image_type, image_topic, CameraInfo, settings.camera_info_topic,
                                           qos_profile_sensor_data, callback, settings.pairing_tolerance,
                                           settings.pairing_queue_size, image_options=events)
    if synchroniser is not None:
        camera.filters = synchroniser  # (synchroniser, image subscriber, info subscriber)
        return camera
    pairing = StampPairing(callback, settings.pairing_tolerance, settings.pairing_queue_size)
    camera.subscriptions += [
        node.create_subscription(image_type, image_topic, pairing.add_image, qos_profile_sensor_data, **events),
        node.create_subscription(CameraInfo, settings.camera_info_topic, pairing.add_info, qos_profile_sensor_data)]
    return camera


class ParameterIntrinsics:
    """The camera matrix from the ``intrinsics`` parameters, for the image size they are for.

    That size is ``intrinsics_size``, or the size of the first image when it is ``[0, 0]``. An
    image of another size is refused (:class:`ImageConversionError`) or, with
    ``intrinsics_size_mismatch: rescale``, gets the intrinsics scaled to its size.
    """

    def __init__(self, settings: CameraInputParameters):
        fx, fy, cx, cy = (float(v) for v in settings.intrinsics)
        self._matrix = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        width, height = (int(v) for v in settings.intrinsics_size)
        self._size: tuple[int, int] | None = (width, height) if width > 0 else None
        self._rescale = settings.intrinsics_size_mismatch == "rescale"
        self._lock = threading.Lock()

    def matrix(self, size: tuple[int, int]) -> np.ndarray:
        """The camera matrix for an image of ``size = (width, height)``."""
        with self._lock:
            if self._size is None:
                self._size = size
            reference = self._size
        if size == reference:
            return self._matrix.copy()
        if not self._rescale:
            raise ImageConversionError(f"the image is {size[0]}x{size[1]} but the intrinsics parameters are for "
                                       f"{reference[0]}x{reference[1]} (set intrinsics_size, or "
                                       "intrinsics_size_mismatch: rescale)")
        scale = np.diag([size[0] / reference[0], size[1] / reference[1], 1.0])
        return scale @ self._matrix


def image_size(image: Any, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` of an Image or CompressedImage after the checks that need no decoding.

    Raises:
        ImageConversionError: see :func:`~mds_core.data.rosbag.decode.raw_image_layout` and
            :func:`~mds_core.data.rosbag.decode.check_compressed`.
    """
    if isinstance(image, CompressedImage):
        header = check_compressed(image, max_pixels)
        return header.width, header.height
    try:
        layout = raw_image_layout(image, max_pixels)
    except UnsupportedEncoding:
        if not cv_bridge_available():
            raise
        check_image_size(image, max_pixels)  # cv_bridge may know it: only the size checks here
        return int(image.width), int(image.height)
    return layout.width, layout.height


def check_frame(image: Any, info: CameraInfo | None, settings: CameraInputParameters,
                intrinsics: ParameterIntrinsics | None) -> None:
    """Cheap checks of one frame (no decoding): image sizes, encoding, step and data length, a
    compressed image's header, and the camera info (or the parameter intrinsics) for its size.

    Meant for subscription callbacks, so that a malformed message never takes a valid frame's place.

    Raises:
        ImageConversionError: naming the first problem found.
    """
    size = image_size(image, settings.max_input_pixels)
    if info is not None:
        check_camera_info(info, size)
    elif intrinsics is not None:
        intrinsics.matrix(size)


def decode_frame(image: Any, info: CameraInfo | None, settings: CameraInputParameters,
                 intrinsics: ParameterIntrinsics | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb (H, W, 3) uint8, K (3x3))`` of one frame.

    ``intrinsics`` is required when ``info`` is None (``camera_info_source: parameters``).

    Raises:
        ImageConversionError: for a malformed image or camera info, or a camera info of another size.
    """
    if isinstance(image, CompressedImage):
        rgb = compressed_to_rgb(image, max_pixels=settings.max_input_pixels)
    else:
        rgb = image_to_rgb(image, max_pixels=settings.max_input_pixels)
    size = (rgb.shape[1], rgb.shape[0])
    if info is None:
        if intrinsics is None:
            raise ValueError("decode_frame: intrinsics are required without a camera info")
        return rgb, intrinsics.matrix(size)
    return rgb, check_camera_info(info, size)
