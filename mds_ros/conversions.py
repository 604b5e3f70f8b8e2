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
``ndarray`` goes through a per-element path (about 50 ms).
"""

from __future__ import annotations

import array
import functools
import importlib.util
import math
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
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

__all__ = [
    "ImageConversionError",
    "SUPPORTED_ENCODINGS",
    "image_to_rgb",
    "compressed_to_rgb",
    "rgb8_msg",
    "mono8_msg",
    "float_image_msg",
    "camera_matrix",
    "check_camera_info",
    "check_image_size",
    "cv_bridge_available",
    "scaled_camera_info",
    "point_cloud_msg",
    "pose_array_msg",
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


def _copy_header(header: Header) -> Header:
    """A new ``std_msgs/Header`` with the same stamp and ``frame_id``."""
    if header is None:
        raise ValueError("a header is required (the input image's header: stamp and frame_id)")
    stamp = Time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec))
    return Header(stamp=stamp, frame_id=str(header.frame_id))


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
def _image_msg(pixels: np.ndarray, encoding: str, header: Header) -> Image:
    height, width = pixels.shape[:2]
    msg = Image()
    msg.header = _copy_header(header)
    msg.height, msg.width = int(height), int(width)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(pixels.strides[0]) if pixels.flags.c_contiguous else int(pixels[0].nbytes)
    msg.data = uint8_array(pixels)
    return msg


def _require(array_: np.ndarray, ndim: int, what: str) -> None:
    if array_.ndim != ndim or 0 in array_.shape:
        raise ValueError(f"{what}: expected a non-empty {ndim}-d array, got shape {array_.shape}")


def rgb8_msg(rgb: np.ndarray, header: Header) -> Image:
    """An ``rgb8`` Image of an ``(H, W, 3)`` uint8 array, with a copy of ``header``."""
    rgb = np.asarray(rgb)
    _require(rgb, 3, "rgb8 image")
    if rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb8 image must be (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    return _image_msg(np.ascontiguousarray(rgb), "rgb8", header)


def mono8_msg(mono: np.ndarray, header: Header) -> Image:
    """A ``mono8`` Image of an ``(H, W)`` uint8 array, with a copy of ``header``."""
    mono = np.asarray(mono)
    _require(mono, 2, "mono8 image")
    if mono.dtype != np.uint8:
        raise ValueError(f"mono8 image must be uint8, got {mono.dtype}")
    return _image_msg(np.ascontiguousarray(mono), "mono8", header)


def float_image_msg(values: np.ndarray, header: Header) -> Image:
    """A ``32FC1`` Image of ``(H, W)`` values or a ``32FC<C>`` Image of ``(C, H, W)`` values.

    Channels are interleaved (pixel-major) as ROS / OpenCV expect; data are little endian
    float32. Real-valued inputs of other dtypes are converted to float32.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "fiub":
        raise ValueError(f"float image must be real-valued, got dtype {values.dtype}")
    if values.ndim == 2:
        _require(values, 2, "32FC1 image")
        pixels = np.ascontiguousarray(values, dtype="<f4")
        encoding = "32FC1"
    elif values.ndim == 3:
        _require(values, 3, "32FC<C> image")
        pixels = np.ascontiguousarray(np.moveaxis(values, 0, -1), dtype="<f4")
        encoding = f"32FC{values.shape[0]}"
    else:
        raise ValueError(f"float image must be (H, W) or (C, H, W), got shape {values.shape}")
    return _image_msg(pixels, encoding, header)


# ----------------------------------------------------------------------------- camera info
def _check_intrinsics(K: np.ndarray, what: str) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ImageConversionError(f"{what}: expected a 3x3 camera matrix, got shape {K.shape}")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (math.isfinite(fx) and fx > 0 and math.isfinite(fy) and fy > 0):
        raise ImageConversionError(f"{what}: focal lengths must be finite and > 0, got fx={fx}, fy={fy}")
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise ImageConversionError(f"{what}: principal point must be finite, got cx={cx}, cy={cy}")
    if not np.all(np.isfinite(K)) or not np.allclose(K[2], (0.0, 0.0, 1.0)) or K[1, 0] != 0:
        raise ImageConversionError(f"{what}: not a camera matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]]: {K.tolist()}")
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
    out.header = _copy_header(header)
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
_CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])


def _cloud_fields() -> list[PointField]:
    return [
        PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
        for i, name in enumerate(("x", "y", "z", "rgb"))
    ]


def pack_rgb(colours: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 RGB -> float32 whose bits are ``0x00RRGGBB`` (the PCL / RViz ``rgb`` field)."""
    c = colours.astype(np.uint32)
    packed = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    return packed.astype("<u4").view("<f4")


def point_cloud_msg(depth: np.ndarray, intrinsics: np.ndarray, colours: np.ndarray, header: Header) -> PointCloud2:
    """An organised ``PointCloud2`` (``height=H``, ``width=W``) with fields x, y, z, rgb (float32).

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
    invalid = ~(np.isfinite(z) & (z > 0))
    Kinv = np.linalg.inv(K).astype(np.float32)
    u = np.arange(width, dtype=np.float32)[None, :]
    v = np.arange(height, dtype=np.float32)[:, None]
    points = np.empty((height, width), dtype=_CLOUD_DTYPE)
    points["x"] = (Kinv[0, 0] * u + Kinv[0, 1] * v + Kinv[0, 2]) * z
    points["y"] = (Kinv[1, 1] * v + Kinv[1, 2]) * z
    points["z"] = z
    for axis in ("x", "y", "z"):
        points[axis][invalid] = np.nan
    points["rgb"] = pack_rgb(colours)

    msg = PointCloud2()
    msg.header = _copy_header(header)
    msg.height, msg.width = int(height), int(width)
    msg.fields = _cloud_fields()
    msg.is_bigendian = False
    msg.point_step = _CLOUD_DTYPE.itemsize
    msg.row_step = _CLOUD_DTYPE.itemsize * int(width)
    msg.is_dense = False
    msg.data = uint8_array(points.view(np.uint8).reshape(-1))
    return msg


# ----------------------------------------------------------------------------- poses
def _nearest_rotations(R: np.ndarray) -> np.ndarray:
    """The rotation matrices nearest (Frobenius) to ``R`` ``(K, 3, 3)``."""
    U, _, Vt = np.linalg.svd(R)
    det = np.linalg.det(U @ Vt)
    U[:, :, 2] *= np.where(det < 0, -1.0, 1.0)[:, None]
    return U @ Vt


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """``(K, 3, 3)`` rotations -> ``(K, 4)`` unit quaternions ``(x, y, z, w)`` with ``w >= 0``.

    The input is first projected onto the nearest rotation (so slightly non-orthonormal
    network outputs work); each quaternion is then computed from the largest of
    ``4w^2, 4x^2, 4y^2, 4z^2`` (Shepperd's method), which is stable for every rotation.
    """
    m = _nearest_rotations(np.asarray(R, dtype=np.float64).reshape(-1, 3, 3))
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = (m[:, i, j] for i in range(3) for j in range(3))
    trace = m00 + m11 + m22
    squares = np.stack([1 + trace, 1 + 2 * m00 - trace, 1 + 2 * m11 - trace, 1 + 2 * m22 - trace])  # 4 q_i^2
    # (x, y, z, w) times 4 q_i for i = w, x, y, z: exact for every rotation, stable where q_i is largest
    candidates = np.stack([
        np.stack([m21 - m12, m02 - m20, m10 - m01, squares[0]]),
        np.stack([squares[1], m01 + m10, m02 + m20, m21 - m12]),
        np.stack([m01 + m10, squares[2], m12 + m21, m02 - m20]),
        np.stack([m02 + m20, m12 + m21, squares[3], m10 - m01]),
    ])  # (case, component, K)
    q = candidates[np.argmax(squares, axis=0), :, np.arange(len(m))]  # (K, 4)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 3] < 0] *= -1.0
    return q


def pose_array_msg(transforms: np.ndarray | Sequence[np.ndarray], header: Header) -> PoseArray:
    """A ``PoseArray`` of ``(K, 4, 4)`` (or ``(K, 3, 4)``) rigid transforms, with a copy of ``header``."""
    T = np.asarray(transforms, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"transforms must be (K, 4, 4) or (K, 3, 4), got shape {T.shape}")
    if not np.all(np.isfinite(T[:, :3, :])):
        raise ValueError("transforms contain non-finite values")
    msg = PoseArray()
    msg.header = _copy_header(header)
    if len(T) == 0:
        return msg
    quaternions = rotation_to_quaternion(T[:, :3, :3])
    poses = []
    for t, q in zip(T[:, :3, 3], quaternions):
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in q)
        poses.append(pose)
    msg.poses = poses
    return msg
