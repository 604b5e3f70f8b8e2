"""ROS message <-> numpy conversions with strict validation (the project's own ``cv_bridge``).

Input images (``sensor_msgs/Image``, ``sensor_msgs/CompressedImage``) become ``(H, W, 3)``
``uint8`` RGB arrays through the same decoder that reads bags for training
(:mod:`mds_core.data.rosbag.decode`); malformed messages raise :class:`ImageConversionError` (a
``ValueError``) with a message that says what is wrong, so a node can log it and drop the frame.

Output builders turn arrays into ``Image`` / ``CameraInfo`` / ``PointCloud2`` / ``PoseArray``
messages. They copy the header they are given (stamp and ``frame_id`` of the input image,
REP 118) and never stamp with ``now()``.

Supported input encodings (``sensor_msgs/image_encodings``): ``rgb8``, ``bgr8``, ``rgba8``,
``bgra8``, ``mono8``, ``8UC1``, ``8UC3``, ``rgb16``, ``bgr16``, ``mono16``/``16UC1`` (scaled to 8 bit
by ``>> 8``; ``is_bigendian`` honoured) and ``bayer_rggb8|bggr8|gbrg8|grbg8`` (demosaiced by OpenCV:
OpenCV names a pattern after the 2x2 block at pixel (1, 1), ROS after the block at (0, 0), so ROS
``bayer_rggb8`` is OpenCV ``COLOR_BayerBG2RGB``; checked by the tests on synthetic mosaics).

Other encodings are handed to a real ``cv_bridge`` when one is importable (a ROS install),
after the checks that do not depend on the encoding; otherwise they are rejected.

Data assignment: rclpy stores ``uint8[]`` fields as ``array.array('B')``. Assigning an
``array.array`` filled with ``frombytes(ndarray)`` is a single memcpy (about 0.1 ms for a
640x480 RGB image); assigning ``bytes`` is about twice as slow, a ``memoryview`` or an
``ndarray`` goes through a per-element path (about 50 ms). The output builders write pixels
straight into the message's buffer (:func:`image_msg`, :func:`data_buffer`), and with ``out=``
into a message kept from an earlier frame: rclpy serialises a message while publishing it, so
a node can fill the same message (and buffer) in again for the next frame.
"""

from __future__ import annotations

import array
import functools
import importlib.util
import math
import sys
from collections.abc import Sequence

import cv2
import numpy as np
from geometry_msgs.msg import Pose, PoseArray
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header

from mds_core.data.rosbag.decode import (
    RAW_LAYOUTS,
    FrameDecodeError,
    UnsupportedEncoding,
    clip_text,
    raw_image_to_rgb,
)
from mds_core.data.rosbag.decode import compressed_to_rgb as decode_compressed
from mds_core.method.geometry.camera import inverse_camera_matrix
from mds_core.method.geometry.quaternion import Quaternion, canonical, is_rotation, shepperd

__all__ = [
    "ImageConversionError",
    "SUPPORTED_ENCODINGS",
    "image_to_rgb",
    "compressed_to_rgb",
    "rgb8_msg",
    "mono8_msg",
    "float_image_msg",
    "camera_matrix",
    "set_header",
    "image_msg",
    "data_buffer",
    "check_camera_info",
    "check_image_size",
    "cv_bridge_available",
    "scaled_camera_info",
    "point_cloud_msg",
    "pose_array_msg",
    "pose_msgs",
    "rotation_to_quaternion",
    "uint8_array",
    "pack_rgb",
]

DEFAULT_MAX_PIXELS = 4096 * 4096
#: Focal lengths and principal points further than this many image sizes from the image are not
#: a camera's (and overflow when scaled): a camera info with them is malformed.
MAX_INTRINSICS_FACTOR = 1000.0
#: Distortion coefficients of the longest ROS model (rational polynomial + thin prism + tilt).
MAX_DISTORTION_COEFFICIENTS = 14
MAX_DISTORTION_MODEL_LENGTH = 64


#: Decoding errors of input images (the core decoder's error type).
ImageConversionError = FrameDecodeError

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(RAW_LAYOUTS)


# ----------------------------------------------------------------------------- helpers
def uint8_array(data: np.ndarray | bytes | bytearray | memoryview) -> array.array:
    """An ``array.array('B')`` holding a copy of ``data``'s bytes: the fastest ``uint8[]`` value.

    A C-contiguous ndarray is copied once (``frombytes`` reads its buffer directly).
    """
    out = array.array("B")
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    out.frombytes(data)
    return out


_ZERO_BYTE = array.array("B", [0])


def data_buffer(msg, nbytes: int) -> array.array:
    """``msg.data`` when it is an ``array.array`` of ``nbytes`` bytes, else a new zeroed one set as ``msg.data``.

    A publisher that keeps its message from frame to frame (rclpy serialises it during ``publish``)
    then writes each frame's pixels into the same buffer: no allocation, no zeroing, no copy into
    the message (about 1.5 MB a frame of images and points at 320x96).
    """
    data = msg.data
    if not isinstance(data, array.array) or len(data) != nbytes:
        msg.data = _ZERO_BYTE * nbytes
        data = msg.data  # the field's setter may store a copy: write into what the message holds
    return data


def set_header(target: Header, header: Header) -> Header:
    """Copy the stamp and ``frame_id`` of ``header`` into ``target`` (a message's own header) and return it."""
    if header is None:
        raise ValueError("a header is required (the input image's header: stamp and frame_id)")
    target.stamp.sec, target.stamp.nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
    target.frame_id = str(header.frame_id)
    return target


@functools.cache
def cv_bridge_available() -> bool:
    """Whether a real ``cv_bridge`` is importable (a ROS install) for encodings this module does not know."""
    return importlib.util.find_spec("cv_bridge") is not None


def check_image_size(msg: Image, max_pixels: int) -> None:
    """The checks of an Image that do not depend on its encoding: size, ``step`` and data length.

    Raises:
        ImageConversionError: zero size, more than ``max_pixels`` pixels, or fewer than
            ``step * height`` bytes.
    """
    width, height, step, size = int(msg.width), int(msg.height), int(msg.step), len(msg.data)
    name = clip_text(msg.encoding)
    if width <= 0 or height <= 0 or width * height > max_pixels:
        raise ImageConversionError(f"{name} image: size {width}x{height} is zero or more than {max_pixels} pixels")
    if step < width or size < step * height:
        raise ImageConversionError(f"{name} image: data has {size} bytes, step * height = {step * height} needed "
                                   f"(step {step})")


def _via_cv_bridge(msg: Image) -> np.ndarray:
    """Convert an encoding this module does not handle with a real ``cv_bridge``, if any."""
    try:
        from cv_bridge import CvBridge  # optional: only on a ROS install
    except ImportError:
        raise ImageConversionError(
            f"unsupported image encoding {clip_text(msg.encoding)} (supported: {', '.join(SUPPORTED_ENCODINGS)}; "
            "other encodings need cv_bridge)"
        ) from None
    check_image_size(msg, DEFAULT_MAX_PIXELS)
    try:
        rgb = CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except Exception as error:  # cv_bridge raises its own CvBridgeError and others
        raise ImageConversionError(f"cv_bridge could not convert {clip_text(msg.encoding)} to rgb8: "
                                   f"{clip_text(error, 200)}") from error
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape != (int(msg.height), int(msg.width), 3):
        raise ImageConversionError(f"cv_bridge returned {rgb.dtype} {rgb.shape} for {clip_text(msg.encoding)}")
    return np.ascontiguousarray(rgb)


# ----------------------------------------------------------------------------- input images
def image_to_rgb(msg: Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A ``sensor_msgs/Image`` as a new C-contiguous ``(H, W, 3)`` uint8 RGB array.

    Encodings the core decoder does not know go to ``cv_bridge`` where it is importable, after
    the size checks.

    Raises:
        ImageConversionError: unknown encoding (without cv_bridge), zero size or more than
            ``max_pixels`` pixels, ``step`` smaller than a row, too little data or more than one
            spare row.
    """
    try:
        return raw_image_to_rgb(msg, max_pixels=max_pixels)
    except UnsupportedEncoding:
        return _via_cv_bridge(msg)


def compressed_to_rgb(msg: CompressedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (JPEG, PNG, anything ``cv2.imdecode`` reads) as RGB uint8.

    Raises:
        ImageConversionError: empty data, a ``compressedDepth`` image, undecodable data or a
            decoded image larger than ``max_pixels``.
    """
    return decode_compressed(msg, max_pixels=max_pixels)


# ----------------------------------------------------------------------------- output images
def _merge_into(planes: list[np.ndarray], out: np.ndarray) -> None:
    """Interleave ``(H, W)`` planes into ``out`` ``(H, W, C)``: ``cv2.merge`` in one pass where it can write
    there (little-endian ``out``, at most CV_CN_MAX channels), channel by channel otherwise."""
    if sys.byteorder != "little" or len(planes) > 512:
        for channel, plane in enumerate(planes):
            out[..., channel] = plane
        return
    merged = cv2.merge([np.asarray(plane, dtype=out.dtype) for plane in planes], dst=out)
    if not np.shares_memory(merged, out):
        np.copyto(out, merged)


def image_msg(shape: tuple[int, ...], dtype: np.dtype | str, encoding: str, header: Header,
              out: Image | None = None) -> tuple[Image, np.ndarray]:
    """An Image of row-major pixels (``shape`` = height, width[, channels]) of ``dtype`` with a copy of
    ``header``, and a writable view of its pixels to compute them into.
    With ``out`` (a publisher's message kept from frame to frame) that message is filled in, and its
    data buffer reused when the size has not changed (:func:`data_buffer`)."""
    dtype = np.dtype(dtype)
    msg = Image() if out is None else out
    data = data_buffer(msg, math.prod(shape) * dtype.itemsize)
    set_header(msg.header, header)
    msg.height, msg.width = int(shape[0]), int(shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(math.prod(shape[1:]) * dtype.itemsize)
    return msg, np.frombuffer(data, dtype=dtype).reshape(shape)


def _require(array_: np.ndarray, ndim: int, what: str) -> None:
    if array_.ndim != ndim or 0 in array_.shape:
        raise ValueError(f"{what}: expected a non-empty {ndim}-d array, got shape {array_.shape}")


def rgb8_msg(rgb: np.ndarray, header: Header, out: Image | None = None) -> Image:
    """An ``rgb8`` Image of an ``(H, W, 3)`` uint8 array, with a copy of ``header`` (into ``out``: :func:`image_msg`)."""
    rgb = np.asarray(rgb)
    _require(rgb, 3, "rgb8 image")
    if rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb8 image must be (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    msg, pixels = image_msg(rgb.shape, np.uint8, "rgb8", header, out)
    np.copyto(pixels, rgb)
    return msg


def mono8_msg(mono: np.ndarray, header: Header, out: Image | None = None) -> Image:
    """A ``mono8`` Image of an ``(H, W)`` uint8 array, with a copy of ``header`` (into ``out``: :func:`image_msg`)."""
    mono = np.asarray(mono)
    _require(mono, 2, "mono8 image")
    if mono.dtype != np.uint8:
        raise ValueError(f"mono8 image must be uint8, got {mono.dtype}")
    msg, pixels = image_msg(mono.shape, np.uint8, "mono8", header, out)
    np.copyto(pixels, mono)
    return msg


def float_image_msg(values: np.ndarray, header: Header, out: Image | None = None) -> Image:
    """A ``32FC1`` Image of ``(H, W)`` values or a ``32FC<C>`` Image of ``(C, H, W)`` values (into ``out``:
    :func:`image_msg`).

    Channels are interleaved (pixel-major) as ROS / OpenCV expect; data are little endian
    float32. Real-valued inputs of other dtypes are converted to float32.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "fiub":
        raise ValueError(f"float image must be real-valued, got dtype {values.dtype}")
    if values.ndim not in (2, 3):
        raise ValueError(f"float image must be (H, W) or (C, H, W), got shape {values.shape}")
    _require(values, values.ndim, f"32FC{1 if values.ndim == 2 else '<C>'} image")
    if values.ndim == 2:
        msg, pixels = image_msg(values.shape, "<f4", "32FC1", header, out)
        np.copyto(pixels, values, casting="unsafe")
        return msg
    channels, height, width = values.shape
    msg, pixels = image_msg((height, width, channels), "<f4", f"32FC{channels}", header, out)
    _merge_into(list(values), pixels)
    return msg


# ----------------------------------------------------------------------------- camera info
def _check_intrinsics(K: np.ndarray, what: str) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ImageConversionError(f"{what}: expected a 3x3 camera matrix, got shape {K.shape}")
    (fx, _, cx), (below, fy, cy), last = values = K.tolist()  # Python floats: a few microseconds, not 20
    if not (math.isfinite(fx) and fx > 0 and math.isfinite(fy) and fy > 0):
        raise ImageConversionError(f"{what}: focal lengths must be finite and > 0, got fx={fx}, fy={fy}")
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise ImageConversionError(f"{what}: principal point must be finite, got cx={cx}, cy={cy}")
    # last row (0, 0, 1) within np.allclose's default tolerances
    last_row = abs(last[0]) <= 1e-8 and abs(last[1]) <= 1e-8 and abs(last[2] - 1.0) <= 1e-8 + 1e-5
    if not all(math.isfinite(v) for row in values for v in row) or not last_row or below != 0:
        raise ImageConversionError(f"{what}: not a camera matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]]: {values}")
    return K


def camera_matrix(info: CameraInfo) -> np.ndarray:
    """The 3x3 float64 camera matrix ``K`` of a ``CameraInfo``, validated.

    Raises:
        ImageConversionError: zero width/height, ``fx``/``fy`` not finite and positive,
            ``cx``/``cy`` not finite, or ``k`` not shaped like a camera matrix.
    """
    if int(info.width) <= 0 or int(info.height) <= 0:
        raise ImageConversionError(f"camera info has zero size ({info.width}x{info.height})")
    k = np.asarray(info.k, dtype=np.float64).reshape(-1)
    if k.size != 9:
        raise ImageConversionError(f"camera info k must have 9 values, got {k.size}")
    return _check_intrinsics(k.reshape(3, 3), "camera info").copy()


def check_camera_info(info: CameraInfo, image_size: tuple[int, int]) -> np.ndarray:
    """The camera matrix of a ``CameraInfo`` paired with an image of ``image_size = (width, height)``.

    Beyond :func:`camera_matrix`: the info must be for the image's size, its focal lengths and
    principal point plausible for it (within :data:`MAX_INTRINSICS_FACTOR` image sizes, so they
    cannot overflow when scaled), and its distortion finite (the outputs copy it).

    Raises:
        ImageConversionError: naming the first problem found.
    """
    width, height = (int(v) for v in image_size)
    if (int(info.width), int(info.height)) != (width, height):
        raise ImageConversionError(f"camera_info is for {info.width}x{info.height} but the image is {width}x{height}")
    K = camera_matrix(info)
    bound = MAX_INTRINSICS_FACTOR * max(width, height)
    if np.abs(K[:2]).max() > bound:
        raise ImageConversionError(f"camera info intrinsics beyond {MAX_INTRINSICS_FACTOR:g} image sizes "
                                   f"(fx={K[0, 0]:.6g}, fy={K[1, 1]:.6g}, cx={K[0, 2]:.6g}, cy={K[1, 2]:.6g}): not a "
                                   f"camera's")
    model = str(info.distortion_model)
    if len(model) > MAX_DISTORTION_MODEL_LENGTH:
        raise ImageConversionError(f"camera info distortion_model {clip_text(model)} is not a distortion model")
    d = np.asarray(info.d, dtype=np.float64).reshape(-1)
    if d.size > MAX_DISTORTION_COEFFICIENTS:
        raise ImageConversionError(f"camera info has {d.size} distortion coefficients (at most "
                                   f"{MAX_DISTORTION_COEFFICIENTS} in any ROS model)")
    if not np.all(np.isfinite(d)):
        raise ImageConversionError("camera info distortion coefficients are not all finite")
    return K


def scaled_camera_info(
    info: CameraInfo | None,
    intrinsics: np.ndarray,
    header: Header,
    size_wh: tuple[int, int],
) -> CameraInfo:
    """A ``CameraInfo`` describing an output image of size ``size_wh = (width, height)``.

    ``intrinsics`` is the camera matrix already scaled to that size. The result has
    ``k = intrinsics``, ``p = [k | 0]``, ``r = I``, zero binning and ROI, and a copy of
    ``header``, so that ``depth_image_proc`` can pair it with the output image (REP 104/118).
    Distortion: a resized raw image keeps the input's distortion (``plumb_bob`` and
    ``rational_polynomial`` coefficients act on normalised coordinates, which scaling does not
    change), so ``distortion_model`` and ``d`` are copied from ``info``. Without an input info,
    ``plumb_bob`` with five zeros is used: explicit "no distortion" that every consumer
    (image_geometry, depth_image_proc, RViz) reads, where an empty ``d`` trips some of them.
    """
    width, height = (int(v) for v in size_wh)
    if width <= 0 or height <= 0:
        raise ValueError(f"output size must be positive, got {size_wh}")
    K = _check_intrinsics(np.asarray(intrinsics, dtype=np.float64), "output intrinsics")
    out = CameraInfo()
    set_header(out.header, header)
    out.width, out.height = width, height
    if info is not None:
        out.distortion_model = str(info.distortion_model)
        out.d = [float(v) for v in info.d]
    else:
        out.distortion_model = "plumb_bob"
        out.d = [0.0] * 5
    out.k = K.reshape(-1).copy()
    out.r = np.eye(3).reshape(-1)
    out.p = np.concatenate([K, np.zeros((3, 1))], axis=1).reshape(-1)
    out.binning_x = 0
    out.binning_y = 0
    out.roi = RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return out


# ----------------------------------------------------------------------------- point cloud
_CLOUD_FIELDS = ("x", "y", "z", "rgb")  # float32 each, in this order


def _cloud_fields() -> list[PointField]:
    return [
        PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
        for i, name in enumerate(_CLOUD_FIELDS)
    ]


def pack_rgb(colours: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 RGB -> float32 whose bits are ``0x00RRGGBB`` (the PCL / RViz ``rgb`` field)."""
    colours = np.asarray(colours, dtype=np.uint8)
    # bytes B, G, R, 0: 0x00RRGGBB read as a little-endian uint32
    if colours.ndim == 3 and colours.size:  # an image: OpenCV reorders it in one pass
        packed = cv2.cvtColor(np.ascontiguousarray(colours), cv2.COLOR_RGB2BGRA)
        packed[..., 3] = 0
    else:
        packed = np.zeros(colours.shape[:-1] + (4,), np.uint8)
        for channel in range(3):
            packed[..., 2 - channel] = colours[..., channel]
    return packed.view("<f4")[..., 0]


@functools.lru_cache(maxsize=8)
def _rays(camera_matrix_bytes: bytes, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """x ``(H, W)`` and y ``(H, 1)`` of ``K^-1 [u, v, 1]`` at every pixel (float32, read-only): a pixel's
    point is its depth times these. Cached per camera matrix (float64 bytes) and size: the same every frame."""
    inverse = inverse_camera_matrix(np.frombuffer(camera_matrix_bytes, np.float64).reshape(3, 3)).astype(np.float32)
    u = np.arange(width, dtype=np.float32)[None, :]
    v = np.arange(height, dtype=np.float32)[:, None]
    rays = (inverse[0, 0] * u + inverse[0, 1] * v + inverse[0, 2], inverse[1, 1] * v + inverse[1, 2])
    for array_ in rays:
        array_.flags.writeable = False
    return rays


def point_cloud_msg(depth: np.ndarray, intrinsics: np.ndarray, colours: np.ndarray, header: Header,
                    out: PointCloud2 | None = None) -> PointCloud2:
    """An organised ``PointCloud2`` (``height=H``, ``width=W``) with fields x, y, z, rgb (float32); written
    into ``out`` when given (a publisher's message kept from frame to frame, its buffer reused).

    Pixel ``(u, v)`` (centres at integer coordinates) with depth ``z`` along the optical axis
    becomes ``z * K^-1 [u, v, 1]`` in the camera's optical frame; where depth is not finite or
    not positive x, y and z are NaN (``is_dense = False``). ``rgb`` packs the colour as
    ``0x00RRGGBB`` reinterpreted as float32.
    """
    depth = np.asarray(depth)
    _require(depth, 2, "depth")
    colours = np.asarray(colours)
    if colours.shape != depth.shape + (3,) or colours.dtype != np.uint8:
        raise ValueError(f"colours must be uint8 {depth.shape + (3,)}, got {colours.dtype} {colours.shape}")
    K = _check_intrinsics(np.asarray(intrinsics, dtype=np.float64), "point cloud intrinsics")
    height, width = depth.shape
    z = depth.astype(np.float32)
    valid = z > 0  # false for NaN
    valid &= z < np.inf
    if not valid.all():
        z[~valid] = np.nan  # and so x and y too
    rays_x, rays_y = _rays(K.tobytes(), height, width)
    x, y = rays_x * z, rays_y * z
    msg = PointCloud2() if out is None else out
    data = data_buffer(msg, height * width * 4 * len(_CLOUD_FIELDS))
    _merge_into([x, y, z, pack_rgb(colours)], np.frombuffer(data, "<f4").reshape(height, width, len(_CLOUD_FIELDS)))
    set_header(msg.header, header)
    msg.height, msg.width = int(height), int(width)
    if len(msg.fields) != len(_CLOUD_FIELDS):
        msg.fields = _cloud_fields()
    msg.is_bigendian = False
    msg.point_step = 4 * len(_CLOUD_FIELDS)
    msg.row_step = msg.point_step * int(width)
    msg.is_dense = False
    return msg


# ----------------------------------------------------------------------------- poses
def _quaternion_matrix(m: np.ndarray) -> np.ndarray:
    """Bar-Itzhack's symmetric ``(..., 4, 4)`` matrix of ``(..., 3, 3)`` matrices ``m``, in ``(x, y, z, w)``
    order: its eigenvector of the largest eigenvalue is the unit quaternion of the rotation nearest to
    ``m`` (Frobenius norm), for any ``m`` (J. Guidance 23(6), 2000)."""
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = (np.moveaxis(m[..., i, :], -1, 0) for i in range(3))
    rows = [
        [m00 - m11 - m22, m01 + m10, m02 + m20, m21 - m12],
        [m01 + m10, m11 - m00 - m22, m12 + m21, m02 - m20],
        [m02 + m20, m12 + m21, m22 - m00 - m11, m10 - m01],
        [m21 - m12, m02 - m20, m10 - m01, m00 + m11 + m22],
    ]
    return np.moveaxis(np.array(rows, dtype=np.float64), (0, 1), (-2, -1)) / 3.0


#: The matrix above is linear in ``m``: its value at each of the 9 unit matrices, ``(3, 3, 4, 4)``.
_QUATERNION_BASIS = _quaternion_matrix(np.eye(9).reshape(9, 3, 3)).reshape(3, 3, 4, 4)


def _quaternions(m: np.ndarray) -> list[Quaternion]:
    """Canonical quaternions of ``(n, 3, 3)`` float64 matrices: rotations (within
    :data:`~mds_core.method.geometry.quaternion.ORTHONORMAL_TOLERANCE`) by Shepperd's method in plain
    floats, others as the top eigenvector of Bar-Itzhack's 4x4 matrix (:func:`_quaternion_matrix`), one
    batched symmetric eigensolve."""
    quaternions: list[Quaternion | None] = [shepperd(x) if is_rotation(x) else None for x in m.tolist()]
    others = [k for k, q in enumerate(quaternions) if q is None]
    if others:
        _, vectors = np.linalg.eigh(np.einsum("nij,ijab->nab", m[others], _QUATERNION_BASIS))
        for k, vector in zip(others, vectors[:, :, -1].tolist()):  # eigenvalues ascending: the largest one's
            quaternions[k] = canonical(vector)
    return quaternions


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """``(K, 3, 3)`` rotations -> ``(K, 4)`` unit quaternions ``(x, y, z, w)`` with ``w >= 0`` (half turns:
    their largest component positive).

    The quaternion of the rotation nearest to each matrix (so slightly non-orthonormal network
    outputs work; stable for every rotation): see :func:`_quaternions`.
    """
    m = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    return np.array(_quaternions(m), dtype=np.float64).reshape(-1, 4)


def pose_msgs(transforms: np.ndarray | Sequence[np.ndarray], out: list[Pose] | None = None) -> list[Pose]:
    """``Pose`` messages of ``(K, 4, 4)`` (or ``(K, 3, 4)``) rigid transforms; written into ``out``'s poses
    when it has K of them (a publisher's message kept from frame to frame).

    Raises:
        ValueError: not shaped like transforms, or non-finite values.
    """
    T = np.asarray(transforms, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"transforms must be (K, 4, 4) or (K, 3, 4), got shape {T.shape}")
    rows = T[:, :3, :].tolist()
    if not all(math.isfinite(v) for transform in rows for row in transform for v in row):
        raise ValueError("transforms contain non-finite values")
    poses = out if out is not None and len(out) == len(rows) else [Pose() for _ in rows]
    for pose, transform, q in zip(poses, rows, _quaternions(T[:, :3, :3])):
        pose.position.x, pose.position.y, pose.position.z = (row[3] for row in transform)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = q
    return poses


def pose_array_msg(transforms: np.ndarray | Sequence[np.ndarray], header: Header,
                   out: PoseArray | None = None) -> PoseArray:
    """A ``PoseArray`` of ``(K, 4, 4)`` (or ``(K, 3, 4)``) rigid transforms, with a copy of ``header``
    (written into ``out`` when given)."""
    msg = PoseArray() if out is None else out
    msg.poses = pose_msgs(transforms, out=msg.poses)
    set_header(msg.header, header)
    return msg
