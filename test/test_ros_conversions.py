"""mds_ros.conversions: message <-> numpy round trips, validation errors, clouds and poses."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

from rclpy.serialization import deserialize_message, serialize_message
from ros_support import claim_domain_id, message_differences
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointField
from std_msgs.msg import Header

from mds_ros.conversions import (
    ImageConversionError,
    camera_matrix,
    compressed_to_rgb,
    float_image_msg,
    image_to_rgb,
    mono8_msg,
    point_cloud_msg,
    pose_array_msg,
    rgb8_msg,
    rotation_to_quaternion,
    scaled_camera_info,
    uint8_array,
)

pytestmark = pytest.mark.ros

RNG = np.random.default_rng(0)
K_TEST = np.array([[50.0, 0.0, 31.5], [0.0, 40.0, 15.5], [0.0, 0.0, 1.0]])


def header(sec: int = 12, nanosec: int = 345, frame_id: str = "cam_optical") -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def image_msg(pixels: np.ndarray, encoding: str, *, pad: int = 0, bigendian: bool = False) -> Image:
    """An Image with the raw bytes of ``pixels`` (H, W[, C]) and ``pad`` junk bytes per row."""
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, -1).view(np.uint8)
    if pad:
        junk = np.full((height, pad), 0xAB, dtype=np.uint8)
        rows = np.concatenate([rows, junk], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian), step=rows.shape[1])
    msg.data = uint8_array(rows)
    return msg


def random_rgb(height: int = 6, width: int = 10) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def wire(msg):
    """Serialise and deserialise, as a subscriber would receive it."""
    return deserialize_message(serialize_message(msg), type(msg))


# ----------------------------------------------------------------------------- raw images
@pytest.mark.parametrize("pad", [0, 7])
def test_rgb8_round_trip_through_serialisation(pad):
    rgb = random_rgb()
    out = image_to_rgb(wire(image_msg(rgb, "rgb8", pad=pad)))
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, rgb)


def test_rgb8_msg_round_trip_and_header_copy():
    rgb, h = random_rgb(), header()
    msg = rgb8_msg(rgb, h)
    h.frame_id, h.stamp.sec = "changed", 99
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("cam_optical", 12, 345)
    assert (msg.encoding, msg.width, msg.height, msg.step, msg.is_bigendian) == ("rgb8", 10, 6, 30, 0)
    np.testing.assert_array_equal(image_to_rgb(wire(msg)), rgb)


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize(
    "encoding, make",
    [
        ("bgr8", lambda rgb: rgb[..., ::-1]),
        ("rgba8", lambda rgb: np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)),
        ("bgra8", lambda rgb: np.concatenate([rgb[..., ::-1], np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)),
    ],
)
def test_colour_encodings(encoding, make, pad):
    rgb = random_rgb()
    np.testing.assert_array_equal(image_to_rgb(wire(image_msg(make(rgb), encoding, pad=pad))), rgb)


@pytest.mark.parametrize("pad", [0, 5])
def test_mono8_is_replicated(pad):
    mono = RNG.integers(0, 256, (5, 9), dtype=np.uint8)
    out = image_to_rgb(image_msg(mono, "mono8", pad=pad))
    np.testing.assert_array_equal(out, np.repeat(mono[..., None], 3, axis=2))


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 3])
def test_16_bit_scaled_and_byte_order(encoding, bigendian, pad):
    values = RNG.integers(0, 65536, (4, 7), dtype=np.uint16)
    stored = values.astype(">u2" if bigendian else "<u2")
    out = image_to_rgb(wire(image_msg(stored, encoding, pad=pad, bigendian=bigendian)))
    np.testing.assert_array_equal(out, np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=2))


def bayer_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample an RGB image with a ROS Bayer pattern: ``pattern`` names the 2x2 block at (0, 0)."""
    index = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, index[colour]]
    return mosaic


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("pad", [0, 4])
def test_bayer_patterns_demosaic_to_the_right_colours(pattern, pad):
    colour = np.array([200, 110, 30], np.uint8)  # distinct R, G, B: a swapped pattern is obvious
    rgb = np.broadcast_to(colour, (12, 16, 3)).copy()
    out = image_to_rgb(image_msg(bayer_mosaic(rgb, pattern), f"bayer_{pattern}8", pad=pad))
    inner = out[2:-2, 2:-2].reshape(-1, 3).astype(int)
    assert np.abs(inner - colour).max() <= 2, (pattern, inner[:3])


def test_bayer_on_a_smooth_image():
    y, x = np.mgrid[0:32, 0:48]
    rgb = np.stack([4 * x + 10, 3 * y + 60, 200 - 2 * x], axis=2).astype(np.uint8)
    out = image_to_rgb(image_msg(bayer_mosaic(rgb, "rggb"), "bayer_rggb8"))
    assert np.abs(out[2:-2, 2:-2].astype(int) - rgb[2:-2, 2:-2]).max() <= 8


def test_conversion_of_640x480_rgb8_is_fast():
    msg = wire(rgb8_msg(random_rgb(480, 640), header()))
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        image_to_rgb(msg)
        timings.append(time.perf_counter() - start)
    assert sorted(timings)[2] < 0.025, timings  # about 0.05 ms measured; a per-byte loop takes > 50 ms


# ----------------------------------------------------------------------------- malformed images
def test_errors_are_value_errors():
    assert issubclass(ImageConversionError, ValueError)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (dict(encoding="yuv_weird"), "unsupported image encoding 'yuv_weird'"),
        (dict(encoding=""), "unsupported image encoding ''"),
        (dict(width=0), "zero size"),
        (dict(height=0), "zero size"),
        (dict(step=29), "step 29 is smaller"),
        (dict(step=0), "step 0 is smaller"),
        (dict(step=40), "needed for 6 rows of step 40"),
    ],
)
def test_malformed_images_raise(change, fragment):
    msg = image_msg(random_rgb(), "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError) as info:
        image_to_rgb(msg)
    assert fragment in str(info.value)


def test_empty_and_short_and_oversized_data():
    msg = image_msg(random_rgb(), "rgb8")
    msg.data = uint8_array(np.zeros(0, np.uint8))
    with pytest.raises(ImageConversionError, match="data has 0 bytes"):
        image_to_rgb(msg)
    msg.data = uint8_array(np.zeros(6 * 30 - 1, np.uint8))
    with pytest.raises(ImageConversionError, match="data has 179 bytes"):
        image_to_rgb(msg)
    msg.data = uint8_array(np.zeros(6 * 30 * 3, np.uint8))
    with pytest.raises(ImageConversionError, match="far more than"):
        image_to_rgb(msg)


def test_absurd_size_is_rejected_before_reading_data():
    msg = Image(height=100_000, width=100_000, encoding="rgb8", step=300_000)
    with pytest.raises(ImageConversionError, match="exceeds the limit"):
        image_to_rgb(msg)
    small = image_msg(random_rgb(), "rgb8")
    with pytest.raises(ImageConversionError, match="exceeds the limit of 59 pixels"):
        image_to_rgb(small, max_pixels=59)


def test_other_encodings_go_to_cv_bridge_when_importable(monkeypatch):
    import sys
    import types

    calls = []

    class FakeBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding):
            calls.append((msg.encoding, desired_encoding))
            if msg.width == 3:
                raise RuntimeError("bridge says no")
            return np.full((msg.height, msg.width, 3), 9, np.uint8)

    module = types.ModuleType("cv_bridge")
    module.CvBridge = FakeBridge
    monkeypatch.setitem(sys.modules, "cv_bridge", module)
    msg = image_msg(np.zeros((4, 6, 2), np.uint8), "yuv422")
    assert np.all(image_to_rgb(msg) == 9) and calls == [("yuv422", "rgb8")]
    msg.data = uint8_array(np.zeros(3, np.uint8))
    with pytest.raises(ImageConversionError, match="data has 3 bytes"):  # validated before the bridge
        image_to_rgb(msg)
    with pytest.raises(ImageConversionError, match="bridge says no"):
        image_to_rgb(image_msg(np.zeros((4, 3, 2), np.uint8), "yuv422"))
    assert len(calls) == 2


# ----------------------------------------------------------------------------- compressed
def compressed(rgb: np.ndarray, ext: str, fmt: str) -> CompressedImage:
    ok, buffer = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format=fmt)
    msg.data = uint8_array(buffer)
    return msg


def test_compressed_png_is_exact():
    rgb = random_rgb(20, 30)
    np.testing.assert_array_equal(compressed_to_rgb(wire(compressed(rgb, ".png", "png"))), rgb)


def test_compressed_jpeg_is_close():
    y, x = np.mgrid[0:32, 0:48]
    rgb = np.stack([4 * x, 5 * y, 255 - 3 * x], axis=2).astype(np.uint8)
    out = compressed_to_rgb(compressed(rgb, ".jpg", "rgb8; jpeg compressed bgr8"))
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 4


def test_compressed_errors():
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_to_rgb(CompressedImage(format="jpeg"))
    bad = CompressedImage(format="jpeg")
    bad.data = uint8_array(np.frombuffer(b"not a jpeg at all", np.uint8))
    with pytest.raises(ImageConversionError, match="could not decode"):
        compressed_to_rgb(bad)
    depth = compressed(random_rgb(), ".png", "16UC1; compressedDepth png")
    with pytest.raises(ImageConversionError, match="compressedDepth"):
        compressed_to_rgb(depth)


# ----------------------------------------------------------------------------- output images
def test_mono8_msg():
    labels = RNG.integers(0, 5, (7, 11), dtype=np.uint8)
    msg = wire(mono8_msg(labels, header()))
    assert (msg.encoding, msg.step, msg.width, msg.height) == ("mono8", 11, 11, 7)
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(7, 11), labels)


def test_float_image_single_channel():
    depth = RNG.random((5, 8), dtype=np.float32)
    depth[0, 0] = np.nan
    msg = wire(float_image_msg(depth, header()))
    assert (msg.encoding, msg.step, msg.is_bigendian, msg.header.frame_id) == ("32FC1", 32, 0, "cam_optical")
    np.testing.assert_array_equal(np.frombuffer(msg.data, "<f4").reshape(5, 8), depth)


def test_float_image_multi_channel_is_interleaved():
    masks = RNG.random((3, 4, 6), dtype=np.float32)
    msg = float_image_msg(masks, header())
    assert (msg.encoding, msg.step, msg.width, msg.height) == ("32FC3", 6 * 3 * 4, 6, 4)
    pixels = np.frombuffer(msg.data, "<f4").reshape(4, 6, 3)
    np.testing.assert_array_equal(pixels[2, 5], masks[:, 2, 5])
    np.testing.assert_array_equal(np.moveaxis(pixels, -1, 0), masks)


@pytest.mark.parametrize(
    "build, value",
    [
        (rgb8_msg, np.zeros((4, 4), np.uint8)),
        (rgb8_msg, np.zeros((4, 4, 3), np.float32)),
        (mono8_msg, np.zeros((4, 4), np.int32)),
        (mono8_msg, np.zeros((0, 4), np.uint8)),
        (float_image_msg, np.zeros((2, 2, 2, 2), np.float32)),
        (float_image_msg, np.zeros((4,), np.float32)),
    ],
)
def test_output_builders_reject_bad_arrays(build, value):
    with pytest.raises(ValueError):
        build(value, header())


# ----------------------------------------------------------------------------- camera info
def camera_info(k, width=64, height=32) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = np.asarray(k, dtype=np.float64).reshape(-1)
    info.d = [0.1, -0.05, 0.001, 0.002, 0.0]
    return info


def test_camera_matrix():
    np.testing.assert_array_equal(camera_matrix(camera_info(K_TEST)), K_TEST)
    assert camera_matrix(camera_info(K_TEST)).dtype == np.float64


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda k, i: k.__setitem__((0, 0), 0.0), "focal lengths"),
        (lambda k, i: k.__setitem__((1, 1), -3.0), "focal lengths"),
        (lambda k, i: k.__setitem__((0, 0), np.nan), "focal lengths"),
        (lambda k, i: k.__setitem__((1, 1), np.inf), "focal lengths"),
        (lambda k, i: k.__setitem__((0, 2), np.nan), "principal point"),
        (lambda k, i: k.__setitem__((1, 2), np.inf), "principal point"),
        (lambda k, i: k.__setitem__((2, 2), 0.0), "not a camera matrix"),
        (lambda k, i: setattr(i, "width", 0), "zero size"),
        (lambda k, i: setattr(i, "height", 0), "zero size"),
    ],
)
def test_camera_matrix_validation(mutate, fragment):
    k = K_TEST.copy()
    info = camera_info(k)
    mutate(k, info)
    info.k = k.reshape(-1)
    with pytest.raises(ImageConversionError) as error:
        camera_matrix(info)
    assert fragment in str(error.value)


def test_all_zero_camera_info_is_rejected():
    with pytest.raises(ImageConversionError):
        camera_matrix(CameraInfo())


def test_scaled_camera_info_from_input_info():
    K_small = K_TEST * np.array([[0.5], [0.5], [1.0]])
    info = camera_info(K_TEST)
    out = wire(scaled_camera_info(info, K_small, header(), (32, 16)))
    assert (out.width, out.height, out.header.frame_id, out.header.stamp.sec) == (32, 16, "cam_optical", 12)
    assert out.distortion_model == "plumb_bob" and list(out.d) == list(info.d)
    np.testing.assert_allclose(out.k.reshape(3, 3), K_small)
    np.testing.assert_allclose(out.p.reshape(3, 4), np.hstack([K_small, np.zeros((3, 1))]))
    np.testing.assert_array_equal(out.r.reshape(3, 3), np.eye(3))
    assert (out.binning_x, out.binning_y) == (0, 0)
    roi = out.roi
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height, roi.do_rectify) == (0, 0, 0, 0, False)
    np.testing.assert_allclose(camera_matrix(out), K_small)


def test_scaled_camera_info_without_input_info():
    out = scaled_camera_info(None, K_TEST, header(), (64, 32))
    assert out.distortion_model == "plumb_bob" and list(out.d) == [0.0] * 5
    assert (out.width, out.height) == (64, 32)
    with pytest.raises(ImageConversionError):
        scaled_camera_info(None, np.zeros((3, 3)), header(), (64, 32))
    with pytest.raises(ValueError):
        scaled_camera_info(None, K_TEST, header(), (0, 32))


# ----------------------------------------------------------------------------- point cloud
def cloud_arrays(msg) -> np.ndarray:
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
    return np.frombuffer(msg.data, dtype).reshape(msg.height, msg.width)


def test_point_cloud_layout():
    depth = np.full((4, 6), 2.0, np.float32)
    msg = wire(point_cloud_msg(depth, K_TEST, random_rgb(4, 6), header()))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (4, 6, 16, 96)
    assert msg.is_dense is False and msg.is_bigendian is False
    assert len(msg.data) == 4 * 6 * 16
    fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    assert fields == [(n, 4 * i, PointField.FLOAT32, 1) for i, n in enumerate("x y z rgb".split())]
    assert msg.header.frame_id == "cam_optical"


def test_point_cloud_values_and_invalid_depth():
    height, width = 8, 12
    depth = RNG.uniform(1.0, 20.0, (height, width)).astype(np.float32)
    invalid = [(0, 0), (1, 5), (3, 3), (7, 11)]
    for (v, u), bad in zip(invalid, [0.0, -1.0, np.nan, np.inf]):
        depth[v, u] = bad
    K = np.array([[30.0, 0.5, 5.5], [0.0, 25.0, 3.5], [0.0, 0.0, 1.0]])  # with skew
    colours = random_rgb(height, width)
    points = cloud_arrays(point_cloud_msg(depth, K, colours, header()))
    Kinv = np.linalg.inv(K)
    for v in range(height):
        for u in range(width):
            p = points[v, u]
            if (v, u) in invalid:
                assert math.isnan(p["x"]) and math.isnan(p["y"]) and math.isnan(p["z"])
                continue
            expected = depth[v, u] * (Kinv @ np.array([u, v, 1.0]))
            np.testing.assert_allclose([p["x"], p["y"], p["z"]], expected, rtol=1e-5, atol=1e-5)
    packed = points["rgb"].view("<u4")
    unpacked = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1)
    np.testing.assert_array_equal(unpacked, colours)
    assert np.all(packed >> 24 == 0)


def test_point_cloud_rejects_mismatched_inputs():
    depth = np.ones((4, 6), np.float32)
    with pytest.raises(ValueError):
        point_cloud_msg(depth, K_TEST, random_rgb(4, 5), header())
    with pytest.raises(ValueError):
        point_cloud_msg(depth, np.eye(2), random_rgb(4, 6), header())


# ----------------------------------------------------------------------------- poses
def rot(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


S = math.sqrt(0.5)


@pytest.mark.parametrize(
    "R, q",
    [
        (np.eye(3), (0, 0, 0, 1)),
        (rot("z", 90), (0, 0, S, S)),
        (rot("x", 90), (S, 0, 0, S)),
        (rot("y", -90), (0, -S, 0, S)),
        (rot("x", 180), (1, 0, 0, 0)),
        (rot("y", 180), (0, 1, 0, 0)),
        (rot("z", 180), (0, 0, 1, 0)),
        (np.diag([1.0, -1.0, -1.0]) @ rot("z", 1e-9), (1, 0, 0, 0)),
    ],
)
def test_known_rotations(R, q):
    np.testing.assert_allclose(rotation_to_quaternion(R[None])[0], q, atol=1e-9)


def test_random_rotations_round_trip():
    from numpy.linalg import qr

    mats = []
    for _ in range(200):
        Q, R = qr(RNG.normal(size=(3, 3)))
        Q = Q @ np.diag(np.sign(np.diag(R)))
        mats.append(Q if np.linalg.det(Q) > 0 else -Q)
    mats = np.array(mats)
    quats = rotation_to_quaternion(mats)
    np.testing.assert_allclose(np.linalg.norm(quats, axis=1), 1.0, atol=1e-12)
    assert np.all(quats[:, 3] >= 0)
    for R, q in zip(mats, quats):
        np.testing.assert_allclose(quat_to_matrix(q), R, atol=1e-9)


def test_a_matrix_off_orthonormal_gives_the_quaternion_of_the_nearest_rotation():
    """Rotations take Shepperd's method in plain floats, other matrices an eigensolve: both give the
    nearest rotation (Frobenius), which for a noisy rotation is the SVD's projection."""
    from numpy.linalg import qr, svd

    for noise in (1e-3, 0.2):
        Q, _ = qr(RNG.normal(size=(3, 3)))
        Q *= np.sign(np.linalg.det(Q))
        noisy = Q + RNG.normal(scale=noise, size=(3, 3))
        U, _, Vt = svd(noisy)
        nearest = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
        q = rotation_to_quaternion(noisy[None])[0]
        np.testing.assert_allclose(quat_to_matrix(q), nearest, atol=1e-9)
        assert q[3] >= 0
        # a rotation among non-rotations: each matrix is converted on its own
        both = rotation_to_quaternion(np.stack([noisy, nearest]))
        np.testing.assert_allclose(both[0], both[1], atol=1e-9)


def test_pose_array_msg():
    T = np.tile(np.eye(4), (3, 1, 1))
    T[1, :3, :3] = rot("z", 90)
    T[1, :3, 3] = (1.0, -2.0, 3.5)
    T[2, :3, :3] = rot("x", 30) * 1.001  # slightly off a rotation, as a network may output
    msg = wire(pose_array_msg(T.astype(np.float32), header()))
    assert len(msg.poses) == 3 and msg.header.frame_id == "cam_optical"
    p = msg.poses[1]
    assert (p.position.x, p.position.y, p.position.z) == (1.0, -2.0, 3.5)
    np.testing.assert_allclose([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w], (0, 0, S, S),
                               atol=1e-6)
    o = msg.poses[2].orientation
    np.testing.assert_allclose(quat_to_matrix(np.array([o.x, o.y, o.z, o.w])), rot("x", 30), atol=1e-6)
    assert len(pose_array_msg(np.zeros((0, 4, 4)), header()).poses) == 0
    with pytest.raises(ValueError):
        pose_array_msg(np.eye(4), header())
    with pytest.raises(ValueError):
        pose_array_msg(np.full((1, 4, 4), np.nan), header())


def test_depth_camera_info_is_built_once_per_camera_and_again_when_it_changes():
    """The node sends the depth camera info of earlier frames again (with the new header) until the
    intrinsics, the size or the input's distortion change."""
    import rclpy

    from mds_ros.frames import OdometryFrames
    from mds_ros.outputs import OutputPublishers

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=claim_domain_id())
    try:
        node = rclpy.create_node("camera_info_cache", context=context)
        outputs = OutputPublishers(node, "reliable", OdometryFrames("odom", "", None))
        K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 48.0], [0.0, 0.0, 1.0]])
        stamped = [Header(frame_id="cam") for _ in range(4)]
        for second, header in enumerate(stamped):
            header.stamp.sec = second
        first = outputs._depth_camera_info(None, K, stamped[0], (320, 96))
        assert first.header.stamp.sec == 0
        again = outputs._depth_camera_info(None, K, stamped[1], (320, 96))
        assert again is first and again.header.stamp.sec == 1  # the same message, with this frame's header
        assert not message_differences(again, scaled_camera_info(None, K, stamped[1], (320, 96)))
        moved = K.copy()
        moved[0, 2] = 150.0
        assert list(outputs._depth_camera_info(None, moved, stamped[2], (320, 96)).k)[2] == 150.0
        distorted = CameraInfo(distortion_model="plumb_bob", d=[0.1, 0.0, 0.0, 0.0, 0.0])
        assert list(outputs._depth_camera_info(distorted, moved, stamped[3], (320, 96)).d)[0] == 0.1
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_builders_writing_into_a_kept_message_give_what_a_new_one_would():
    """The node keeps one message per output and writes every frame into it (and into its pixel buffer):
    the message sent must be the one built anew, also when the size changes in between."""
    rng = np.random.default_rng(5)
    first, second = header(1, 2, "cam_a"), header(3, 4, "cam_b")
    depth = rng.uniform(1.0, 50.0, (4, 6)).astype(np.float32)
    cases = [
        (float_image_msg, (rng.random((4, 6)),), (rng.random((3, 5)).astype(np.float32),)),
        (float_image_msg, (rng.random((5, 4, 6)),), (rng.random((5, 4, 6)).astype(np.float32),)),
        (mono8_msg, (rng.integers(0, 5, (4, 6), dtype=np.uint8),), (rng.integers(0, 5, (4, 6), dtype=np.uint8),)),
        (rgb8_msg, (random_rgb(4, 6),), (random_rgb(2, 3),)),
        (point_cloud_msg, (depth, K_TEST, random_rgb(4, 6)), (depth[::-1] * 2.0, K_TEST, random_rgb(4, 6))),
        (pose_array_msg, (np.stack([np.eye(4)] * 3),), (np.stack([_pose(0.1 * k) for k in range(3)]),)),
        (pose_array_msg, (np.stack([np.eye(4)] * 3),), (np.stack([_pose(0.2)] * 2),)),
    ]
    for build, before, after in cases:
        kept = build(*before, first)
        reused = build(*after, second, out=kept)
        assert reused is kept, build.__name__
        assert not message_differences(reused, build(*after, second)), build.__name__
        assert reused.header.frame_id == "cam_b" and reused.header.stamp.sec == 3


def _pose(angle: float) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = [[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0, 0, 1]]
    pose[:3, 3] = (angle, 2.0 * angle, -angle)
    return pose
