"""A node's camera input: subscriptions (image + paired camera info, or intrinsics from
parameters) and the decoding of one pair into an RGB array and its camera matrix.

Shared by the perception node and the online training node, so both read a camera the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from mds_ros.conversions import ImageConversionError, camera_matrix, compressed_to_rgb, image_to_rgb
from mds_ros.pairing import StampPairing, message_filters_pairing
from mds_ros.parameters import CameraInputParameters

FrameCallback = Callable[[Any, "CameraInfo | None"], None]


def subscribe_camera(node: Node, settings: CameraInputParameters, callback: FrameCallback) -> str:
    """Subscribe ``node`` (sensor-data QoS) and call ``callback(image, info)`` for every paired frame
    (``info`` is None with ``camera_info_source: parameters``). Returns the image topic."""
    compressed = settings.input_transport == "compressed"
    image_type = CompressedImage if compressed else Image
    image_topic = settings.image_topic.rstrip("/") + ("/compressed" if compressed else "")
    if settings.camera_info_source == "parameters":
        node.create_subscription(image_type, image_topic, lambda message: callback(message, None),
                                 qos_profile_sensor_data)
        return image_topic
    synchroniser = message_filters_pairing(node, image_type, image_topic, CameraInfo, settings.camera_info_topic,
                                           qos_profile_sensor_data, callback, settings.pairing_tolerance,
                                           settings.pairing_queue_size)
    if synchroniser is not None:
        node._mds_synchroniser = synchroniser  # keep the message_filters objects alive
        return image_topic
    pairing = StampPairing(callback, settings.pairing_tolerance, settings.pairing_queue_size)
    node.create_subscription(image_type, image_topic, pairing.add_image, qos_profile_sensor_data)
    node.create_subscription(CameraInfo, settings.camera_info_topic, pairing.add_info, qos_profile_sensor_data)
    return image_topic


def decode_frame(image: Any, info: CameraInfo | None, settings: CameraInputParameters) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb (H, W, 3) uint8, K (3x3))`` of one frame.

    Raises:
        ImageConversionError: for a malformed image or camera info, or a camera info of another size.
    """
    if isinstance(image, CompressedImage):
        rgb = compressed_to_rgb(image, max_pixels=settings.max_input_pixels)
    else:
        rgb = image_to_rgb(image, max_pixels=settings.max_input_pixels)
    height, width = rgb.shape[:2]
    if info is None:
        fx, fy, cx, cy = settings.intrinsics
        return rgb, np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    intrinsics = camera_matrix(info)
    if (info.width, info.height) != (width, height):
        raise ImageConversionError(f"camera_info is for {info.width}x{info.height} but the image is {width}x{height}")
    return rgb, intrinsics
