"""Camera messages as numpy: images to ``(H, W, 3)`` uint8 RGB, CameraInfo to a calibration.

Messages are those deserialised by ``rosbags`` (fields as attributes, ``uint8[]`` as numpy
arrays); nothing here needs ROS.

Raw ``sensor_msgs/Image`` encodings: ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``,
``8UC1``, ``8UC3`` (BGR, OpenCV's order), ``mono16`` / ``16UC1`` / ``rgb16`` / ``bgr16``
(scaled to 8 bit by ``>> 8``, ``is_bigendian`` honoured) and ``bayer_rggb8``, ``bayer_bggr8``,
``bayer_gbrg8``, ``bayer_grbg8`` (demosaiced by OpenCV). Rows may be padded (``step`` larger
than ``width`` times the pixel size). ``sensor_msgs/CompressedImage``: JPEG, PNG, WebP, BMP and
PNM/PAM, the formats whose size is read from the header (:func:`compressed_header`) before
anything is decoded, so a small message declaring a huge image is refused cheaply;
``compressedDepth`` and other formats are refused. Decoding is strict: OpenCV errors become
:class:`FrameDecodeError`, the decoded size must equal the header's, and a JPEG must end with its
end marker and must not have run out of entropy-coded data (see :func:`jpeg_ran_out_of_data`).

Strings taken from messages (``encoding``, ``format``) are shortened in error messages
(:func:`clip_text`): they end up in logs and diagnostics.

Bayer: ROS names a pattern after the 2x2 block at pixel (0, 0); OpenCV's ``COLOR_Bayer*``
codes are named after the block starting at (1, 1), one row and column later. So ROS
``bayer_rggb8`` (R at (0, 0)) is OpenCV's ``BayerBG`` (B at (1, 1)), and so on.
"""

from __future__ import annotations

import array
import struct
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
#: JPEG and PNG compress no real image (not even a flat one: about 60 and 300 pixels per byte) by
#: more than this; a header declaring more pixels per byte of data is a decompression bomb.
MAX_PIXELS_PER_BYTE = 2048
#: Longest client string (encoding, format) quoted whole in an error message.
MAX_QUOTED = 48


class FrameDecodeError(ValueError):
    """A message cannot be turned into an image; the message says why (used as a drop reason)."""


def clip_text(value: Any, limit: int = MAX_QUOTED) -> str:
    """``repr`` of a string from a message, shortened to about ``limit`` characters.

    Messages are client data: a 64 KiB ``encoding`` must not be copied into every log line and
    diagnostics message that mentions it.
    """
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


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


@dataclass(frozen=True)
class RawLayout:
    """Where the pixels of a validated raw Image are: ``height`` rows of ``row_bytes`` every ``step`` bytes."""

    encoding: str
    width: int
    height: int
    step: int
    channels: int
    depth: int  # bytes per channel

    @property
    def row_bytes(self) -> int:
        return self.width * self.channels * self.depth


def raw_image_layout(message: Any, max_pixels: int = MAX_PIXELS, data_size: int | None = None) -> RawLayout:
    """Check a raw ``sensor_msgs/Image``'s sizes against its data without touching the pixels.

    ``data_size`` defaults to ``len(message.data)``. Cheap enough for a subscription callback.

    Raises:
        UnsupportedEncoding: an encoding not in :data:`RAW_LAYOUTS`.
        FrameDecodeError: zero size or more than ``max_pixels`` pixels, ``step`` smaller than a
            row, too little data, or more than one spare row of data.
    """
    encoding = str(message.encoding)
    name = clip_text(encoding) if encoding else "image"
    width, height, step = int(message.width), int(message.height), int(message.step)
    if width <= 0 or height <= 0:
        raise FrameDecodeError(f"{name} has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise FrameDecodeError(f"{name} size {width}x{height} = {width * height} pixels exceeds the "
                               f"limit of {max_pixels} pixels")
    if encoding not in RAW_LAYOUTS:
        raise UnsupportedEncoding(f"unsupported encoding {name} (supported: {', '.join(RAW_LAYOUTS)})")
    channels, depth = RAW_LAYOUTS[encoding]
    layout = RawLayout(encoding, width, height, step, channels, depth)
    if step < layout.row_bytes:
        raise FrameDecodeError(f"{encoding} image: step {step} is smaller than width * bytes per pixel = "
                               f"{layout.row_bytes}")
    size = len(message.data) if data_size is None else data_size
    needed = step * (height - 1) + layout.row_bytes
    if size < needed:
        raise FrameDecodeError(f"{encoding} image: data has {size} bytes, {needed} needed for {height} rows "
                               f"of step {step}")
    if size > step * (height + 1):  # more than one spare row: the sizes do not describe the data
        raise FrameDecodeError(f"{encoding} image: data has {size} bytes, far more than step * height = "
                               f"{step * height}")
    return layout


def _rows(data: np.ndarray, layout: RawLayout) -> np.ndarray:
    """``(height, row_bytes)`` view of the pixel bytes, padding skipped (the last row may omit its
    padding); ``data`` has been checked by :func:`raw_image_layout`."""
    return np.lib.stride_tricks.as_strided(data, shape=(layout.height, layout.row_bytes),
                                           strides=(layout.step, 1), writeable=False)


def raw_image_to_rgb(message: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A ``sensor_msgs/Image`` (a rosbags or an rclpy message) as a new ``(H, W, 3)`` uint8 RGB array.

    Honours ``step`` (row padding; the last row may omit it) and, for 16-bit encodings,
    ``is_bigendian``; 16-bit values are scaled to 8 bit by dropping the low byte.

    Raises:
        UnsupportedEncoding: an encoding not in :data:`RAW_LAYOUTS`.
        FrameDecodeError: see :func:`raw_image_layout`.
    """
    data = _flat_bytes(message.data)
    layout = raw_image_layout(message, max_pixels, data_size=data.size)
    rows = np.ascontiguousarray(_rows(data, layout))
    height, width, channels = layout.height, layout.width, layout.channels
    if layout.depth == 2:
        dtype = ">u2" if int(message.is_bigendian) else "<u2"
        rows = (rows.view(dtype) >> 8).astype(np.uint8)
    pixels = rows.reshape(height, width, channels) if channels > 1 else rows.reshape(height, width)
    code = _TO_RGB[layout.encoding]
    return pixels.copy() if code is None else cv2.cvtColor(pixels, code)


@dataclass(frozen=True)
class CompressedHeader:
    """What a compressed image's header says: format and size."""

    format: str  # jpeg, png, webp, bmp, pnm
    width: int
    height: int


def check_compressed(message: Any, max_pixels: int = MAX_PIXELS) -> CompressedHeader:
    """Check a ``sensor_msgs/CompressedImage`` from its header alone (cheap, no decoding).

    Raises:
        FrameDecodeError: a ``compressedDepth`` image, no data, a format whose size cannot be
            read from its header, a zero size or more than ``max_pixels`` pixels, a JPEG or PNG
            declaring far more pixels than its data can hold, or a JPEG without its end marker.
    """
    fmt = str(message.format)
    if "compresseddepth" in fmt[:256].lower().replace(" ", ""):
        raise FrameDecodeError(f"compressedDepth images are not colour images (format {clip_text(fmt)})")
    data = _flat_bytes(message.data)
    if data.size == 0:
        raise FrameDecodeError(f"compressed image ({clip_text(fmt)}) has no data")
    header = compressed_header(data)
    if header is None:
        raise FrameDecodeError(f"could not decode compressed image (format {clip_text(fmt)}, {data.size} bytes): "
                               "undecodable data (not a JPEG, PNG, WebP, BMP or PNM image with a readable size)")
    if header.width <= 0 or header.height <= 0:
        raise FrameDecodeError(f"compressed {header.format} image has zero size ({header.width}x{header.height})")
    if header.width * header.height > max_pixels:
        raise FrameDecodeError(f"compressed {header.format} image size {header.width}x{header.height} exceeds the "
                               f"limit of {max_pixels} pixels")
    if header.format in ("jpeg", "png") and header.width * header.height > MAX_PIXELS_PER_BYTE * data.size:
        raise FrameDecodeError(f"compressed {header.format} image declares {header.width}x{header.height} pixels in "
                               f"{data.size} bytes: not a real image (a decompression bomb)")
    if header.format == "jpeg" and _jpeg_end(data) is None:
        raise FrameDecodeError(f"truncated JPEG ({data.size} bytes): no end-of-image marker")
    return header


def compressed_to_rgb(message: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` as ``(H, W, 3)`` uint8 RGB, checked before and after decoding.

    Raises:
        FrameDecodeError: see :func:`check_compressed`; also data OpenCV cannot decode (or
            fails on), a decoded size other than the header's, or a JPEG whose data ran out.
    """
    header = check_compressed(message, max_pixels)
    data = _flat_bytes(message.data)
    image = _imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.shape[:2] != (header.height, header.width):
        got = "nothing" if image is None else f"{image.shape[1]}x{image.shape[0]}"
        raise FrameDecodeError(f"could not decode compressed {header.format} image ({data.size} bytes, header "
                               f"{header.width}x{header.height}): decoded {got}")
    if header.format == "jpeg" and jpeg_ran_out_of_data(data, image, cv2.IMREAD_COLOR):
        raise FrameDecodeError(f"corrupt JPEG ({data.size} bytes): the compressed data ends before the image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _imdecode(data: np.ndarray, flag: int) -> np.ndarray | None:
    """``cv2.imdecode`` that reports malformed input as :class:`FrameDecodeError`, never ``cv2.error``."""
    try:
        image = cv2.imdecode(data, flag)
    except cv2.error as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "cv2.error"
        raise FrameDecodeError(f"OpenCV refused the compressed image ({data.size} bytes): "
                               f"{clip_text(first_line, 160)}") from None
    return None if image is None or image.size == 0 else image


#: Bytes appended to a JPEG's entropy-coded data by :func:`jpeg_ran_out_of_data` (no 0xFF: no marker).
_EXTRA_SCAN_BYTES = np.random.default_rng(12).integers(0, 0xFF, 256, dtype=np.uint8)


def jpeg_ran_out_of_data(data: np.ndarray, image: np.ndarray, flag: int) -> bool:
    """Whether libjpeg ran out of entropy-coded data while decoding ``data`` into ``image``.

    A JPEG cut short and given a new end marker decodes without an error: libjpeg warns on
    stderr and fills the rest of the image with mid-grey (all coefficients zero). So when the
    bottom-right corner of ``image`` is mid-grey, the data is decoded once more with 256 extra
    bytes before the end marker: a complete JPEG ignores them (same pixels), a truncated one
    decodes them into the missing blocks (other pixels). The check misses truncations whose
    last blocks were not left grey (a progressive JPEG cut in a refinement scan).
    """
    corner = image[-2:, -2:].astype(np.int16)
    if np.abs(corner - 128).max() > 8:
        return False
    end = _jpeg_end(data)
    if end is None:
        return True
    padded = np.concatenate([data[:end], _EXTRA_SCAN_BYTES, data[end:]])
    again = _imdecode(padded, flag)
    return again is None or again.shape != image.shape or not np.array_equal(again, image)


def _jpeg_end(data: np.ndarray) -> int | None:
    """Index of the JPEG end-of-image marker at the end of ``data`` (zero bytes after it allowed)."""
    tail = data[-64:].tobytes().rstrip(b"\x00")
    if not tail.endswith(b"\xff\xd9"):
        return None
    return data.size - (min(data.size, 64) - len(tail)) - 2


_REDUCED_JPEG = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def message_to_rgb(msgtype: str, message: Any) -> np.ndarray:
    """Decode an Image or CompressedImage message."""
    if msgtype == IMAGE_TYPE:
        return raw_image_to_rgb(message)
    if msgtype == COMPRESSED_TYPE:
        return compressed_to_rgb(message)
    raise FrameDecodeError(f"{msgtype} is not an image type")


def decode_for_size(msgtype: str, message: Any, target: tuple[int, int],
                    max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """``(rgb, native (w, h))``: a JPEG at least twice ``target`` ``(W, H)`` in both directions is
    decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling, several times faster), still no
    smaller than ``target``; ``native`` is always the full size, from the JPEG header."""
    if msgtype == COMPRESSED_TYPE:
        header = check_compressed(message, max_pixels)
        if header.format == "jpeg":
            data = _flat_bytes(message.data)
            size = (header.width, header.height)
            for factor, flag in _REDUCED_JPEG:
                if size[0] // factor >= target[0] and size[1] // factor >= target[1]:
                    image = _imdecode(data, flag)
                    expected = (-(-size[0] // factor), -(-size[1] // factor))
                    if image is not None and abs(image.shape[1] - expected[0]) <= 1 and abs(image.shape[0] - expected[1]) <= 1:
                        if jpeg_ran_out_of_data(data, image, flag):
                            raise FrameDecodeError(f"corrupt JPEG ({data.size} bytes): the compressed data ends "
                                                   "before the image")
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
    """``(width, height)`` from a compressed image's header without decoding; None when not recognised."""
    header = compressed_header(data)
    return None if header is None else (header.width, header.height)


def compressed_header(data: Any) -> CompressedHeader | None:
    """Format and size of a JPEG, PNG, WebP, BMP or PNM/PAM image from its first bytes; None when
    ``data`` is none of these or its header is cut short."""
    buf = bytes(_flat_bytes(data)[:65536])
    for reader in (_jpeg_header, _png_header, _webp_header, _bmp_header, _pnm_header):
        try:
            header = reader(buf)
        except (IndexError, ValueError, struct.error):
            header = None
        if header is not None:
            return header
    return None


def _png_header(buf: bytes) -> CompressedHeader | None:
    if not buf.startswith(b"\x89PNG\r\n\x1a\n") or len(buf) < 24 or buf[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", buf[16:24])
    return CompressedHeader("png", width, height)


def _jpeg_header(buf: bytes) -> CompressedHeader | None:
    """The size in the first start-of-frame segment (markers walked by their lengths)."""
    if not buf.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 9 < len(buf):
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
            pos += 1 if marker == 0xFF else 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        length = int.from_bytes(buf[pos + 2: pos + 4], "big")
        if length < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack(">HH", buf[pos + 5: pos + 9])
            return CompressedHeader("jpeg", width, height)
        pos += 2 + length
    return None


def _webp_header(buf: bytes) -> CompressedHeader | None:
    if len(buf) < 30 or buf[:4] != b"RIFF" or buf[8:12] != b"WEBP":
        return None
    chunk = buf[12:16]
    if chunk == b"VP8 " and buf[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", buf[26:30])
        return CompressedHeader("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and buf[20] == 0x2F:
        bits = int.from_bytes(buf[21:25], "little")
        return CompressedHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        return CompressedHeader("webp", int.from_bytes(buf[24:27], "little") + 1,
                                int.from_bytes(buf[27:30], "little") + 1)
    return None


def _bmp_header(buf: bytes) -> CompressedHeader | None:
    if not buf.startswith(b"BM") or len(buf) < 26:
        return None
    info_size = struct.unpack("<I", buf[14:18])[0]
    if info_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", buf[18:22])
    elif info_size >= 40:
        width, height = struct.unpack("<ii", buf[18:26])
        height = abs(height)  # negative: rows stored top-down
    else:
        return None
    return CompressedHeader("bmp", width, height)


def _pnm_header(buf: bytes) -> CompressedHeader | None:
    """P1-P6 (``P<n> width height ...``, comments allowed) and P7 / PAM (``WIDTH w``, ``HEIGHT h``)."""
    if len(buf) < 3 or buf[0:1] != b"P" or buf[1:2] not in b"1234567" or buf[2:3] not in b" \t\r\n#":
        return None
    head = buf[:1024]
    if buf[1:2] == b"7":
        fields = dict(line.split(None, 1) for line in head.split(b"ENDHDR")[0].splitlines()[1:]
                      if len(line.split(None, 1)) == 2)
        return CompressedHeader("pnm", int(fields[b"WIDTH"]), int(fields[b"HEIGHT"]))
    tokens = [t for line in head[2:].splitlines() for t in line.split(b"#")[0].split()]
    return CompressedHeader("pnm", int(tokens[0]), int(tokens[1]))
