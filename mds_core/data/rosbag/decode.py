"""Camera messages as numpy: images to ``(H, W, 3)`` uint8 RGB, CameraInfo to a calibration.

Messages are those deserialised by ``rosbags`` (fields as attributes, ``uint8[]`` as numpy
arrays); nothing here needs ROS.

Raw ``sensor_msgs/Image`` encodings: ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``,
``8UC1``, ``8UC3`` (BGR, OpenCV's order), ``mono16`` / ``16UC1`` / ``rgb16`` / ``bgr16``
(scaled to 8 bit by ``>> 8``, ``is_bigendian`` honoured) and ``bayer_rggb8``, ``bayer_bggr8``,
``bayer_gbrg8``, ``bayer_grbg8`` (demosaiced by OpenCV). Rows may be padded (``step`` larger
than ``width`` times the pixel size). ``sensor_msgs/CompressedImage``: anything OpenCV decodes
(jpeg, png); ``compressedDepth`` is refused.

Bayer: ROS names a pattern after the 2x2 block at pixel (0, 0); OpenCV's ``COLOR_Bayer*``
codes are named after the block starting at (1, 1), one row and column later. So ROS
``bayer_rggb8`` (R at (0, 0)) is OpenCV's ``BayerBG`` (B at (1, 1)), and so on.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)

#: encoding -> (channels, bytes per channel)
RAW_LAYOUTS: dict[str, tuple[int, int]] = {
    "rgb8": (3, 1),
    "bgr8": (3, 1),
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "mono8": (1, 1),
    "8UC1": (1, 1),
    "8UC3": (3, 1),
    "mono16": (1, 2),
    "16UC1": (1, 2),
    "rgb16": (3, 2),
    "bgr16": (3, 2),
    "bayer_rggb8": (1, 1),
    "bayer_bggr8": (1, 1),
    "bayer_gbrg8": (1, 1),
    "bayer_grbg8": (1, 1),
}

_TO_RGB: dict[str, int | None] = {
    "rgb8": None,
    "rgb16": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "bgr16": cv2.COLOR_BGR2RGB,
    "8UC3": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "8UC1": cv2.COLOR_GRAY2RGB,
    "mono16": cv2.COLOR_GRAY2RGB,
    "16UC1": cv2.COLOR_GRAY2RGB,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}

MAX_PIXELS = 8192 * 8192


class FrameDecodeError(ValueError):
    """A message cannot be turned into an image; the message says why (used as a drop reason)."""


def stamp_ns(message: Any) -> int:
    """``header.stamp`` in integer nanoseconds (0 when the publisher left it unset)."""
    stamp = message.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _flat_bytes(data: Any) -> np.ndarray:
    """A message's ``data`` as flat uint8, without a copy for buffers (rclpy's ``array('B')``, bytes)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.reshape(-1).astype(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def raw_image_size(message: Any) -> tuple[int, int]:
    """``(width, height)`` of a raw Image message."""
    return int(message.width), int(message.height)


class UnsupportedEncoding(FrameDecodeError):
    """An Image encoding this module does not decode (the ROS node then tries cv_bridge)."""


def raw_image_to_rgb(message: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A ``sensor_msgs/Image`` (a rosbags or an rclpy message) as a new ``(H, W, 3)`` uint8 RGB array.

    Honours ``step`` (row padding; the last row may omit it) and, for 16-bit encodings,
    ``is_bigendian``; 16-bit values are scaled to 8 bit by dropping the low byte.

    Raises:
        UnsupportedEncoding: an encoding not in :data:`RAW_LAYOUTS`.
        FrameDecodeError: zero size or more than ``max_pixels`` pixels, ``step`` smaller than a
            row, too little data, or more than one spare row of data.
    """
    encoding = str(message.encoding)
    width, height, step = int(message.width), int(message.height), int(message.step)
    if width <= 0 or height <= 0:
        raise FrameDecodeError(f"{encoding or 'image'} has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise FrameDecodeError(f"{encoding or 'image'} size {width}x{height} = {width * height} pixels exceeds the "
                               f"limit of {max_pixels} pixels")
    if encoding not in RAW_LAYOUTS:
        raise UnsupportedEncoding(f"unsupported encoding {encoding!r} (supported: {', '.join(RAW_LAYOUTS)})")
    channels, depth = RAW_LAYOUTS[encoding]
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise FrameDecodeError(f"{encoding} image: step {step} is smaller than width * bytes per pixel = {row_bytes}")
    data = _flat_bytes(message.data)
    needed = step * (height - 1) + row_bytes
    if data.size < needed:
        raise FrameDecodeError(f"{encoding} image: data has {data.size} bytes, {needed} needed for {height} rows "
                               f"of step {step}")
    if data.size > step * (height + 1):  # more than one spare row: the sizes do not describe the data
        raise FrameDecodeError(f"{encoding} image: data has {data.size} bytes, far more than step * height = "
                               f"{step * height}")
    if data.size >= step * height:
        rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    else:  # the last row omits its padding
        rows = np.stack([data[r * step: r * step + row_bytes] for r in range(height)])
    if depth == 2:
        dtype = ">u2" if int(message.is_bigendian) else "<u2"
        rows = (np.ascontiguousarray(rows).view(dtype) >> 8).astype(np.uint8)
    pixels = np.ascontiguousarray(rows.reshape(height, width, channels) if channels > 1
                                  else rows.reshape(height, width))
    code = _TO_RGB[encoding]
    return pixels.copy() if code is None else cv2.cvtColor(pixels, code)


def compressed_to_rgb(message: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg, png) as ``(H, W, 3)`` uint8 RGB."""
    fmt = str(message.format)
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise FrameDecodeError(f"compressedDepth images are not colour images (format {fmt!r})")
    data = _flat_bytes(message.data)
    if data.size == 0:
        raise FrameDecodeError(f"compressed image ({fmt!r}) has no data")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise FrameDecodeError(f"could not decode compressed image (format {fmt!r}, {data.size} bytes): "
                               "undecodable data")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise FrameDecodeError(f"decoded compressed image size {image.shape[1]}x{image.shape[0]} exceeds the limit "
                               f"of {max_pixels} pixels")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


_REDUCED_JPEG = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def message_to_rgb(msgtype: str, message: Any) -> np.ndarray:
    """Decode an Image or CompressedImage message."""
    if msgtype == IMAGE_TYPE:
        return raw_image_to_rgb(message)
    if msgtype == COMPRESSED_TYPE:
        return compressed_to_rgb(message)
    raise FrameDecodeError(f"{msgtype} is not an image type")


def decode_for_size(msgtype: str, message: Any, target: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """``(rgb, native (w, h))``: a JPEG at least twice ``target`` ``(W, H)`` in both directions is
    decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling, several times faster), still no
    smaller than ``target``; ``native`` is always the full size, from the JPEG header."""
    if msgtype == COMPRESSED_TYPE:
        data = _flat_bytes(message.data)
        size = compressed_size(data) if data[:2].tobytes() == b"\xff\xd8" else None
        if size is not None:
            for factor, flag in _REDUCED_JPEG:
                if size[0] // factor >= target[0] and size[1] // factor >= target[1]:
                    image = cv2.imdecode(data, flag)
                    expected = (-(-size[0] // factor), -(-size[1] // factor))
                    if image is not None and abs(image.shape[1] - expected[0]) <= 1 and abs(image.shape[0] - expected[1]) <= 1:
                        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), size
                    break
    rgb = message_to_rgb(msgtype, message)
    return rgb, (rgb.shape[1], rgb.shape[0])


@dataclass(frozen=True)
class Calibration:
    """A CameraInfo's calibration: ``K`` (3x3), ``P`` (3x4), distortion ``D``, image size."""

    K: tuple[float, ...]
    P: tuple[float, ...]
    D: tuple[float, ...]
    model: str
    width: int
    height: int

    @classmethod
    def from_message(cls, message: Any) -> Calibration:
        k = np.asarray(message.k, dtype=np.float64).reshape(-1)
        p = np.asarray(message.p, dtype=np.float64).reshape(-1)
        d = np.asarray(message.d, dtype=np.float64).reshape(-1)
        if k.size != 9 or p.size != 12:
            raise FrameDecodeError(f"CameraInfo with {k.size} K and {p.size} P values")
        if not (np.all(np.isfinite(k)) and np.all(np.isfinite(d))) or k[0] <= 0 or k[4] <= 0:
            raise FrameDecodeError("CameraInfo with zero, negative or non-finite focal lengths")
        return cls(tuple(k), tuple(p), tuple(d), str(message.distortion_model),
                   int(message.width), int(message.height))

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.K, dtype=np.float64).reshape(3, 3)

    @property
    def projection(self) -> np.ndarray:
        return np.asarray(self.P, dtype=np.float64).reshape(3, 4)

    @property
    def distorted(self) -> bool:
        return any(abs(c) > 1e-9 for c in self.D)


def compressed_size(data: Any) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG or JPEG header without decoding; None when not recognised."""
    buf = bytes(_flat_bytes(data)[:65536])
    if buf.startswith(b"\x89PNG\r\n\x1a\n") and len(buf) >= 24:
        return int.from_bytes(buf[16:20], "big"), int.from_bytes(buf[20:24], "big")
    if not buf.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 9 < len(buf):
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(buf[pos + 2: pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            return int.from_bytes(buf[pos + 7: pos + 9], "big"), int.from_bytes(buf[pos + 5: pos + 7], "big")
        pos += 2 + length
    return None
