"""Malformed and hostile camera messages for the node hardening tests (issue 12).

Every builder returns new rclpy messages; ``(image, info)`` pairs share a stamp so the node
pairs them. The camera is :data:`WIDTH` x :data:`HEIGHT`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

WIDTH, HEIGHT = 96, 64
_RNG = np.random.default_rng(12)
#: A smooth picture (JPEG-friendly); the same for every frame.
PICTURE = cv2.GaussianBlur(_RNG.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8), (5, 5), 0)
_JPEG = cv2.imencode(".jpg", PICTURE[..., ::-1])[1].tobytes()
_PNG = cv2.imencode(".png", PICTURE[..., ::-1])[1].tobytes()


def nanoseconds(stamp: float) -> int:
    return int(round(stamp * 1e9))


def _stamp(message, stamp: float, frame_id: str = "cam"):
    ns = nanoseconds(stamp)
    message.header.stamp.sec, message.header.stamp.nanosec = divmod(ns, 1_000_000_000)
    message.header.frame_id = frame_id
    return message


def camera_info(stamp: float, size: tuple[int, int] = (WIDTH, HEIGHT), fx: float = 100.0) -> CameraInfo:
    info = _stamp(CameraInfo(), stamp)
    info.width, info.height = size
    info.k = [fx, 0.0, size[0] / 2, 0.0, fx, size[1] / 2, 0.0, 0.0, 1.0]
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    return info


def valid_frame(stamp: float, compressed: bool = False, size: tuple[int, int] = (WIDTH, HEIGHT)):
    """A valid ``(image, info)`` of :data:`PICTURE` (resized to ``size``)."""
    picture = PICTURE if size == (WIDTH, HEIGHT) else cv2.resize(PICTURE, size)
    if compressed:
        image = CompressedImage(format="jpeg", data=_JPEG if size == (WIDTH, HEIGHT) else
                                cv2.imencode(".jpg", picture[..., ::-1])[1].tobytes())
    else:
        image = Image(height=size[1], width=size[0], encoding="rgb8", step=size[0] * 3, data=picture.tobytes())
    return _stamp(image, stamp), camera_info(stamp, size)


def with_info(image, stamp: float):
    """``(image, a valid camera info)`` with the same stamp."""
    return _stamp(image, stamp), camera_info(stamp)


# ----------------------------------------------------------------------------- compressed
def compressed(data: bytes, fmt: str = "jpeg") -> CompressedImage:
    return CompressedImage(format=fmt, data=data)


def bmp_huge_width() -> CompressedImage:
    """246 bytes: a BMP declaring a width of 2,000,000 (cv2.imdecode raised cv2.error)."""
    pixels = bytes(192)
    header = b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, 2_000_000, 1, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return compressed(header + info + pixels, "bmp")


def pam_zero_height() -> CompressedImage:
    """A PAM of height 0 (cv2.imdecode raised cv2.error)."""
    return compressed(b"P7\nWIDTH 4\nHEIGHT 0\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + bytes(48), "pam")


def jpeg_bomb(width: int, height: int) -> CompressedImage:
    """A small JPEG whose frame header declares ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return compressed(bytes(data))


def png_bomb() -> CompressedImage:
    data = bytearray(_PNG)
    data[16:24] = struct.pack(">II", 20000, 20000)
    return compressed(bytes(data), "png")


def long_format() -> CompressedImage:
    """A 64 KiB format string around undecodable data."""
    return compressed(bytes(_RNG.integers(0, 255, 300, dtype=np.uint8)), "x" * 65536)


def truncated_jpeg(stamp: float):
    """The first half of a valid JPEG plus an end marker: decodes, without an error, to a partly grey frame."""
    return with_info(compressed(_JPEG[: len(_JPEG) // 2] + b"\xff\xd9"), stamp)


def compressed_kinds(stamp: float) -> list:
    """One ``(image, info)`` of every kind of malformed compressed image."""
    images = [
        bmp_huge_width(), pam_zero_height(), jpeg_bomb(12000, 12000), jpeg_bomb(30000, 30000), png_bomb(),
        long_format(), compressed(_JPEG[: len(_JPEG) // 2]), compressed(bytes(_RNG.integers(0, 255, 500, np.uint8))),
        compressed(b""), compressed(_PNG, "png; compressedDepth"),
        compressed(cv2.imencode(".tiff", PICTURE)[1].tobytes(), "tiff"),
    ]
    return [with_info(image, stamp + 1e-3 * index) for index, image in enumerate(images)] + \
        [truncated_jpeg(stamp + 0.05)]


# ----------------------------------------------------------------------------- raw
def _raw(stamp: float, **fields) -> tuple[Image, CameraInfo]:
    image, info = valid_frame(stamp)
    for name, value in fields.items():
        setattr(image, name, value)
    return image, info


def raw_kinds(stamp: float) -> list:
    """One ``(image, info)`` of every kind of malformed raw image."""
    data = PICTURE.tobytes()
    return [
        _raw(stamp, encoding="e" * 65536),
        _raw(stamp + 0.001, encoding="32FC7"),
        _raw(stamp + 0.002, width=0),
        _raw(stamp + 0.003, height=0),
        _raw(stamp + 0.004, width=100000, height=100000, step=300000),
        _raw(stamp + 0.005, step=5),
        _raw(stamp + 0.006, data=data[:-10]),
        _raw(stamp + 0.007, data=data + bytes(WIDTH * 3 * 2)),
        _raw(stamp + 0.008, data=b""),
        _raw(stamp + 0.009, step=2**31 - 1),
    ]


def tall_padded_mono8(stamp: float, height: int = 250_000):
    """A legal 1 x ``height`` mono8 image whose rows carry a padding byte, the last one without it
    (500 KB: larger messages are often lost on a best-effort subscription)."""
    image = _stamp(Image(height=height, width=1, encoding="mono8", step=2,
                         data=np.tile(np.array([90, 0], np.uint8), height)[:-1].tobytes()), stamp)
    return image, camera_info(stamp, (1, height), fx=500.0)


# ----------------------------------------------------------------------------- camera info
def _set(**fields) -> Callable[[CameraInfo], None]:
    def mutate(info: CameraInfo) -> None:
        for name, value in fields.items():
            setattr(info, name, value)
    return mutate


def _k(**entries: float) -> Callable[[CameraInfo], None]:
    index = {"fx": 0, "cx": 2, "fy": 4, "cy": 5, "skew": 1}

    def mutate(info: CameraInfo) -> None:
        k = list(info.k)
        for name, value in entries.items():
            k[index[name]] = value
        info.k = k
    return mutate


CAMERA_INFO_KINDS: dict[str, Callable[[CameraInfo], None]] = {
    "fx 1e308": _k(fx=1e308),
    "fx and fy 1e308": _k(fx=1e308, fy=1e308),
    "cx 1e300": _k(cx=1e300),
    "nan fx": _k(fx=float("nan")),
    "inf fy": _k(fy=float("inf")),
    "zero k": _set(k=[0.0] * 9),
    "negative fy": _k(fy=-100.0),
    "nan distortion": _set(d=[float("nan")] * 5),
    "inf distortion": _set(d=[0.0, float("inf"), 0.0, 0.0, 0.0]),
    "1000 distortion coefficients": _set(d=[0.0] * 1000),
    "64 KiB distortion model": _set(distortion_model="m" * 65536),
    "another size": _set(width=WIDTH * 2, height=HEIGHT * 2),
}


def camera_info_kinds(stamp: float, compressed_images: bool) -> list:
    """One ``(valid image, malformed info)`` of every kind of malformed camera info."""
    frames = []
    for index, mutate in enumerate(CAMERA_INFO_KINDS.values()):
        image, info = valid_frame(stamp + 1e-3 * index, compressed=compressed_images)
        mutate(info)
        frames.append((image, info))
    return frames
